"""A ProvDocument (``prov`` package) for a Selection of jobs and entities: the small IVOA layer.

Both models make the same statements with standard PROV records; they differ only in the
vocabulary of the attributes and types: ``voprov:`` terms (IVOA ProvDM) or neutral ``opus:``
terms (MODEL=W3C, which holds no voprov term at all).  ``docs/provenance.md`` lists them.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from pathlib import Path

from prov.identifier import QualifiedName
from prov.model import PROV, ProvActivity, ProvDocument

from opus.errors import ConfigurationError, NotFound
from opus.jobdef.model import GeneratedDescription, JobDefinition
from opus.jobdef.registry import JobDefinitionRegistry
from opus.provenance.traverse import Selection
from opus.storage.entitystore import Entity
from opus.uws import Job

log = logging.getLogger(__name__)

VOPROV = "http://www.ivoa.net/documents/ProvenanceDM/ns/voprov/"
OPUS = "urn:opus:prov#"
#: A job's own PROV-JSON file of its internal steps (moved there from $OPUS_WORK_DIR by the wrapper).
STEPS_FILE = "provenance.json"
MAX_STEPS_SIZE = 2 * 1024 * 1024
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


class Builder:
    """Adds jobs, entities and their relations to one document; ``build()`` does it for a Selection."""

    def __init__(self, base: str, model: str = "IVOA", agents: bool = True, descriptions: bool = False,
                 configuration: bool = True, registry: JobDefinitionRegistry | None = None,
                 jobs_dir: Path | None = None) -> None:
        self.base = base.rstrip("/")
        self.ivoa = model == "IVOA"
        self.agents, self.descriptions, self.configuration = agents, descriptions, configuration
        self.registry, self.jobs_dir = registry, jobs_dir
        doc = self.doc = ProvDocument()
        self.vocab = doc.add_namespace("voprov" if self.ivoa else "opus", VOPROV if self.ivoa else OPUS)
        self.opus = self.vocab if not self.ivoa else doc.add_namespace("opus", OPUS)
        self.ns_job = doc.add_namespace("opus_job", f"{self.base}/rest/")
        self.ns_store = doc.add_namespace("opus_store", f"{self.base}/store?ID=")
        self.ns_user = doc.add_namespace("opus_user", f"{self.base}/users/")
        self.ns_agent = doc.add_namespace("opus_agent", f"{self.base}/agents/")
        self.ns_jdl = doc.add_namespace("opus_jdl", f"{self.base}/jdl/")
        self._defs: dict[tuple[str, str | None], JobDefinition | None] = {}
        self._plans: set[QualifiedName] = set()
        self._agents: set[QualifiedName] = set()

    # ---- identifiers --------------------------------------------------------------------------
    def t(self, name: str) -> QualifiedName:
        """A term of the model's vocabulary."""
        return self.vocab[name]

    def job_id(self, job: Job) -> QualifiedName:
        return self.ns_job[f"{job.jobname}/{job.job_id}"]

    def entity_id(self, entity_id: str) -> QualifiedName:
        return self.ns_store[entity_id]

    def plan_id(self, name: str, version: str | None, part: str = "") -> QualifiedName:
        return self.ns_jdl[f"{name}?version={version or ''}{part}"]

    # ---- the whole selection ---------------------------------------------------------------------
    def build(self, sel: Selection) -> ProvDocument:
        for job in sel.jobs.values():
            self.add_job(job)
        for entity in sel.entities.values():
            self.add_entity(entity, deleted=entity.generated_by in sel.deleted_jobs)
        jobs_used: dict[str, dict[str, list[str]]] = {}
        for job_id, role, entity_id in sel.used:
            job = sel.jobs[job_id]
            attrs: dict[QualifiedName, str | QualifiedName] = {PROV["role"]: role}
            jobdef = self.definition(job)
            if self.descriptions and jobdef is not None and role in jobdef.used:
                attrs[self.t("usageDescription")] = self.plan_id(job.jobname, jobdef.version, f"&used={role}")
            self.doc.used(self.job_id(job), self.entity_id(entity_id), job.start_time, other_attributes=attrs)
            jobs_used.setdefault(job_id, {}).setdefault(role, []).append(entity_id)
        for entity_id, job_id, role in sel.generated():
            job = sel.jobs[job_id]
            attrs = {PROV["role"]: role}
            jobdef = self.definition(job)
            spec = self._generated_spec(jobdef, sel.entities[entity_id])
            if self.descriptions and spec is not None and jobdef is not None:  # a spec comes from a jobdef
                attrs[self.t("generationDescription")] = self.plan_id(job.jobname, jobdef.version,
                                                                      f"&generated={spec.name}")
            self.doc.wasGeneratedBy(self.entity_id(entity_id), self.job_id(job), job.end_time,
                                    other_attributes=attrs)
            for source in (spec.derived_from if spec is not None else ()):
                for used_id in jobs_used.get(job_id, {}).get(source, ()):
                    self.doc.wasDerivedFrom(self.entity_id(entity_id), self.entity_id(used_id), self.job_id(job))
        for job in sel.jobs.values():
            self.graft_steps(job)
        return self.doc

    # ---- definitions ----------------------------------------------------------------------------
    def definition(self, job: Job) -> JobDefinition | None:
        key = (job.jobname, job.jdl_version)
        if key not in self._defs:
            try:
                self._defs[key] = self.registry.get(job.jobname, job.jdl_version) if self.registry else None
            except (NotFound, ConfigurationError):
                self._defs[key] = None
        return self._defs[key]

    @staticmethod
    def _generated_spec(jobdef: JobDefinition | None, entity: Entity) -> GeneratedDescription | None:
        if jobdef is None:
            return None
        if entity.role in jobdef.generated:
            return jobdef.generated[entity.role]
        return next((g for g in jobdef.generated.values()
                     if g.is_pattern and fnmatch.fnmatch(entity.file_name, g.file)), None)

    def add_plan(self, job: Job, jobdef: JobDefinition | None) -> QualifiedName:
        version = jobdef.version if jobdef is not None else job.jdl_version
        plan = self.plan_id(job.jobname, version)
        if plan in self._plans:
            return plan
        self._plans.add(plan)
        t = self.t
        attrs = [(PROV["type"], PROV["Plan"]), (PROV["type"], t("ActivityDescription")),
                 (t("name"), job.jobname), (PROV["location"], f"{self.base}/jdl/{job.jobname}?version={version or ''}")]
        if version:
            attrs.append((t("version"), version))
        if jobdef is not None:
            attrs += [(t(k), v) for k, v in (("annotation", jobdef.description), ("type", jobdef.type),
                                              ("subtype", jobdef.subtype), ("doculink", jobdef.doculink)) if v]
        if self.descriptions and jobdef is not None:
            attrs.append((PROV["type"], PROV["Collection"]))
        self.doc.entity(plan, attrs)
        if self.descriptions and jobdef is not None:
            self._add_descriptions(job.jobname, jobdef, plan)
        return plan

    def _add_descriptions(self, jobname: str, jobdef: JobDefinition, plan: QualifiedName) -> None:
        t = self.t
        for p in jobdef.parameters.values():
            attrs = [(PROV["type"], t("ParameterDescription")), (t("name"), p.name), (t("datatype"), p.type),
                     (t("required"), p.required), (t("multiplicity"), p.multiplicity)]
            attrs += [(t(k), v) for k, v in (("default", p.default), ("annotation", p.description),
                                              ("unit", p.unit), ("ucd", p.ucd), ("utype", p.utype),
                                              ("min", p.min), ("max", p.max)) if v not in (None, "")]
            attrs += [(t("option"), o) for o in p.options]
            self.doc.hadMember(plan, self.doc.entity(self.plan_id(jobname, jobdef.version, f"&parameter={p.name}"),
                                                     attrs))
        for u in jobdef.used.values():
            attrs = [(PROV["type"], t("UsageDescription")), (t("name"), u.name), (t("multiplicity"), u.multiplicity)]
            attrs += [(t(k), v) for k, v in (("role", u.role), ("content_type", u.content_type),
                                              ("annotation", u.description), ("url", u.url)) if v]
            self.doc.hadMember(plan, self.doc.entity(self.plan_id(jobname, jobdef.version, f"&used={u.name}"), attrs))
        for g in jobdef.generated.values():
            attrs = [(PROV["type"], t("GenerationDescription")), (t("name"), g.name), (t("file_name"), g.file),
                     (t("content_type"), g.content_type)]
            attrs += [(t(k), v) for k, v in (("role", g.role), ("annotation", g.description)) if v]
            self.doc.hadMember(plan, self.doc.entity(self.plan_id(jobname, jobdef.version, f"&generated={g.name}"),
                                                     attrs))

    # ---- activities, agents, configuration -------------------------------------------------------
    def add_job(self, job: Job) -> None:
        t = self.t
        jobdef = self.definition(job)
        attrs = [(PROV["label"], job.jobname), (t("name"), job.jobname),
                 (PROV["location"], f"{self.base}/rest/{job.jobname}/{job.job_id}"), (self.opus["phase"], job.phase.value)]
        if jobdef is not None:
            attrs += [(t(k), v) for k, v in (("type", jobdef.type), ("subtype", jobdef.subtype)) if v]
        if job.run_id:
            attrs.append((self.opus["runId"], job.run_id))
        activity = self.doc.activity(self.job_id(job), job.start_time, job.end_time, attrs)
        plan = self.add_plan(job, jobdef)
        if self.agents:
            owner = self._agent(self.ns_user[job.owner_id] if job.owner_id else self.ns_agent["anonymous"],
                                job.owner_id or "anonymous", "")
            self.doc.wasAssociatedWith(activity, owner, plan, other_attributes={PROV["role"]: "owner"})
            if jobdef is not None and (jobdef.contact_name or jobdef.contact_email):
                name = jobdef.contact_name or jobdef.contact_email
                contact = self._agent(self.ns_agent[_SLUG.sub("_", name)[:64] or "contact"], name,
                                      jobdef.contact_email)
                self.doc.wasAssociatedWith(activity, contact, None, other_attributes={PROV["role"]: "contact"})
        else:
            self.doc.wasAssociatedWith(activity, None, plan)
        if self.configuration:
            self._add_configuration(job, jobdef, activity)

    def _agent(self, ident: QualifiedName, name: str, email: str) -> QualifiedName:
        if ident not in self._agents:
            self._agents.add(ident)
            attrs = [(PROV["type"], PROV["Person"]), (PROV["label"], name), (self.t("name"), name)]
            if email:
                attrs.append((self.t("email"), email))
            self.doc.agent(ident, attrs)
        return ident

    def _add_configuration(self, job: Job, jobdef: JobDefinition | None, activity: ProvActivity) -> None:
        """The parameter values (not the inputs: those are used entities) as voprov:Parameter entities."""
        t = self.t
        given = {p.name: p.value for p in job.parameters if not p.by_reference}
        values: dict[str, str | None] = dict(given)
        if jobdef is not None:
            values = {name: given.get(name, p.default) for name, p in jobdef.parameters.items()}
        for name, value in values.items():
            if value is None:
                continue
            ident = self.ns_job[f"{job.jobname}/{job.job_id}/parameters/{name}"]
            param = self.doc.entity(ident, [(PROV["type"], t("Parameter")), (t("name"), name), (PROV["value"], value)])
            self.doc.wasInfluencedBy(activity, param, other_attributes={
                PROV["type"]: t("wasConfiguredBy"), t("artefactType"): "Parameter"})
            if self.descriptions and jobdef is not None:
                self.doc.wasInfluencedBy(param, self.plan_id(job.jobname, jobdef.version, f"&parameter={name}"),
                                         other_attributes={PROV["type"]: t("hadDescription")})

    # ---- entities ----------------------------------------------------------------------------------
    def add_entity(self, entity: Entity, deleted: bool = False) -> None:
        t = self.t
        attrs = [(PROV["label"], entity.file_name), (t("file_name"), entity.file_name),
                 (t("content_type"), entity.content_type), (t("size"), int(entity.size)),
                 (t("sha256"), entity.sha256)]
        if entity.available:
            attrs.append((PROV["location"], f"{self.base}/store/{entity.entity_id}/{entity.file_name}"))
        if entity.generated_by is not None:
            attrs.append((t("result_name"), entity.role))
        elif entity.source:
            attrs.append((self.opus["source"], entity.source))
        notes = []
        if deleted:
            notes.append(f"generated by job {entity.generated_by} ({entity.jobname}), which was deleted: "
                         "its activity is gone")
        if not entity.available:
            notes.append("its file was deleted with its job")
        if notes:
            attrs.append((t("comment"), "; ".join(notes)))
        self.doc.entity(self.entity_id(entity.entity_id), attrs)

    # ---- a job's own internal steps ------------------------------------------------------------------
    def graft_steps(self, job: Job) -> None:
        """Copy the records of the job's ``provenance.json`` (PROV-JSON) in; each activity there was
        started by the job's activity (wasStartedBy with the job as starter)."""
        if self.jobs_dir is None:
            return
        path = self.jobs_dir / job.job_id / STEPS_FILE
        try:
            if path.stat().st_size > MAX_STEPS_SIZE:
                log.warning("job %s: %s is over %d bytes: not shown", job.job_id, STEPS_FILE, MAX_STEPS_SIZE)
                return
            steps = ProvDocument.deserialize(content=path.read_text("utf-8"), format="json").flattened()
        except FileNotFoundError:
            return
        except Exception as exc:  # noqa: BLE001 - whatever the job wrote, its provenance is still served
            log.warning("job %s: %s is not PROV-JSON (%s): not shown", job.job_id, STEPS_FILE, exc)
            return
        for record in steps.get_records():
            attrs = [(k, v) for k, v in record.extra_attributes
                     if self.ivoa or not _is_voprov(k) and not _is_voprov(v)]
            new = self.doc.new_record(record.get_type(), record.identifier, record.formal_attributes, attrs)
            if new.get_type() == PROV["Activity"] and new.identifier is not None:
                self.doc.wasStartedBy(new.identifier, None, self.job_id(job),
                                      other_attributes={PROV["type"]: self.opus["internalStep"]})


def _is_voprov(value: object) -> bool:
    return isinstance(value, QualifiedName) and value.namespace.uri == VOPROV
