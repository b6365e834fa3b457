"""UWS documents: XML exactly as ``uws-1.1.xsd`` wants it (CHECKLIST §2.9, §8) and the same
resources as JSON.  Strings are built directly (not through a DOM) because job lists can be long
and every GET renders one; the tests validate every document against the schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from opus.jobdef import JobDefinition
from opus.server import urls
from opus.timeutil import format_instant
from opus.uws import NOT_XML_CHAR, Job, JobRef, Parameter, Phase, Result
UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
ROOT_NS = f'xmlns:uws="{UWS_NS}" xmlns:xlink="{XLINK_NS}" xmlns:xsi="{XSI_NS}"'
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
#: {result id: (entity id, URL in the result store)} of a job's results.
Entities = dict[str, tuple[str, str]]


def _instant(tag: str, value: datetime | None) -> str:
    if value is None:
        return f'<uws:{tag} xsi:nil="true"/>'
    return f"<uws:{tag}>{format_instant(value)}</uws:{tag}>"


def _text(value: str) -> str:
    """XML-escape text, dropping characters XML 1.0 cannot carry (input refuses them; this
    guards server-made text such as a script's stderr in an error message)."""
    return escape(NOT_XML_CHAR.sub("", value), {"\r": "&#13;"})


def parameter_value(job_url: str, p: Parameter) -> str:
    """The value a client sees: uploads as the URL where OPUS serves them."""
    if p.by_reference and p.value.startswith("param:"):
        return urls.parameter(job_url, p.value[6:])
    return p.value


def result_url(job_url: str, r: Result) -> str:
    return urls.result(job_url, r.result_id)


def _parameters_xml(job_url: str, params: Iterable[Parameter]) -> list[str]:
    out = []
    for p in params:
        ref = ' byReference="true"' if p.by_reference else ""
        post = ' isPost="true"' if p.is_post else ""
        out.append(f"<uws:parameter id={quoteattr(p.name)}{ref}{post}>{_text(parameter_value(job_url, p))}"
                   "</uws:parameter>")
    return out


def _results_xml(job_url: str, results: Iterable[Result]) -> list[str]:
    out = []
    for r in results:
        size = f' size="{r.size}"' if r.size is not None else ""
        out.append(f'<uws:result id={quoteattr(r.result_id)} xlink:type="simple" '
                   f'xlink:href={quoteattr(result_url(job_url, r))}{size} mime-type={quoteattr(r.content_type)}/>')
    return out


def job_xml(job: Job, job_url: str, files_url: str | None = None) -> str:
    """The job document; ``files_url`` (default ``job_url``): the job's URL on the origin that serves
    its files (RESULTS_BASE_URL), for the links to results and uploads."""
    files_url = files_url or job_url
    parts = [HEAD, f'<uws:job {ROOT_NS} xmlns:opus="urn:opus" version="1.1">', f"<uws:jobId>{job.job_id}</uws:jobId>"]
    if job.run_id is not None:
        parts.append(f"<uws:runId>{_text(job.run_id)}</uws:runId>")
    parts.append('<uws:ownerId xsi:nil="true"/>' if job.owner_id is None
                 else f"<uws:ownerId>{_text(job.owner_id)}</uws:ownerId>")
    parts.append(f"<uws:phase>{job.phase.value}</uws:phase>")
    parts.append(_instant("quote", job.quote))
    parts.append(f"<uws:creationTime>{format_instant(job.creation_time)}</uws:creationTime>")
    parts.append(_instant("startTime", job.start_time))
    parts.append(_instant("endTime", job.end_time))
    parts.append(f"<uws:executionDuration>{job.execution_duration}</uws:executionDuration>")
    parts.append(_instant("destruction", job.destruction_time))
    params = _parameters_xml(files_url, job.parameters)
    parts.append("<uws:parameters>" + "".join(params) + "</uws:parameters>" if params else "<uws:parameters/>")
    results = _results_xml(files_url, job.results)
    parts.append("<uws:results>" + "".join(results) + "</uws:results>" if results else "<uws:results/>")
    if job.error is not None:
        parts.append(f'<uws:errorSummary type="{job.error.type}" hasDetail="{"true" if job.error.has_detail else "false"}">'
                     f"<uws:message>{_text(job.error.message)}</uws:message></uws:errorSummary>")
    parts.append(f"<uws:jobInfo><opus:jobName>{_text(job.jobname)}</opus:jobName>"
                 + (f"<opus:jobDefinitionVersion>{_text(job.jdl_version)}"
                    "</opus:jobDefinitionVersion>" if job.jdl_version else "")
                 + "</uws:jobInfo>")
    parts.append("</uws:job>")
    return "".join(parts)


_PHASE_TEXT = {p: p.value for p in Phase}  # Enum.value is a descriptor: slow in a loop of 1,000


def joblist_xml(refs: Iterable[JobRef], list_url: str) -> str:
    """The job list; each jobref links to ``<list_url>/<job id>`` (ids are hex: no escaping)."""
    return "".join(joblist_xml_chunks(refs, list_url))


def joblist_xml_chunks(refs: Iterable[JobRef], list_url: str, per_chunk: int = 1000) -> Iterator[str]:
    """The job list in pieces of ``per_chunk`` jobrefs, for streaming long lists."""
    base = escape(list_url, {'"': "&quot;"})
    parts = [HEAD, f'<uws:jobs {ROOT_NS} version="1.1">']
    append = parts.append
    href = urls.job_in_list(base, "")
    phase_text = _PHASE_TEXT
    for r in refs:
        run_id = "" if r.run_id is None else f"<uws:runId>{_text(r.run_id)}</uws:runId>"
        owner = '<uws:ownerId xsi:nil="true"/>' if r.owner_id is None \
            else f"<uws:ownerId>{_text(r.owner_id)}</uws:ownerId>"
        append(f'<uws:jobref id="{r.job_id}" xlink:type="simple" xlink:href="{href}{r.job_id}">'
               f"<uws:phase>{phase_text[r.phase]}</uws:phase>{run_id}{owner}"
               f"<uws:creationTime>{r.created}</uws:creationTime></uws:jobref>")
        if len(parts) >= per_chunk:
            yield "".join(parts)
            parts.clear()
    parts.append("</uws:jobs>")
    yield "".join(parts)


def parameters_xml(job: Job, job_url: str) -> str:
    return (HEAD + f"<uws:parameters {ROOT_NS}>" + "".join(_parameters_xml(job_url, job.parameters))
            + "</uws:parameters>")


def results_xml(job: Job, job_url: str) -> str:
    return HEAD + f"<uws:results {ROOT_NS}>" + "".join(_results_xml(job_url, job.results)) + "</uws:results>"


def error_votable(message: str) -> str:
    """The /error document: a DALI error VOTable (CHECKLIST §6.6)."""
    return (HEAD + '<VOTABLE xmlns="http://www.ivoa.net/xml/VOTable/v1.3" version="1.4">'
            '<RESOURCE type="results"><INFO name="QUERY_STATUS" value="ERROR">'
            f"{_text(message)}</INFO></RESOURCE></VOTABLE>")


# ---- JSON ---------------------------------------------------------------------------------------------
def iso(value: datetime | None) -> str | None:
    """An instant as ISO 8601 (JSON's null for None)."""
    return format_instant(value) if value is not None else None




def job_json(job: Job, job_url: str, jobdef: JobDefinition | None = None, entities: Entities | None = None,
             files_url: str | None = None) -> dict[str, Any]:
    """The job as JSON; ``files_url`` as in ``job_xml``."""
    files_url = files_url or job_url
    return {
        "jobId": job.job_id, "jobName": job.jobname, "runId": job.run_id, "ownerId": job.owner_id,
        "phase": job.phase.value, "quote": iso(job.quote), "creationTime": iso(job.creation_time),
        "startTime": iso(job.start_time), "endTime": iso(job.end_time),
        "executionDuration": job.execution_duration, "destruction": iso(job.destruction_time),
        "parameters": parameters_json(job, files_url), "results": results_json(job, files_url, jobdef, entities),
        "errorSummary": None if job.error is None else {
            "type": job.error.type, "hasDetail": job.error.has_detail, "message": job.error.message},
        "jobDefinitionVersion": job.jdl_version, "href": job_url,
    }


def parameters_json(job: Job, job_url: str) -> list[dict[str, Any]]:
    return [{"id": p.name, "value": parameter_value(job_url, p), "byReference": p.by_reference}
            for p in job.parameters]


def results_json(job: Job, job_url: str, jobdef: JobDefinition | None = None,
                 entities: Entities | None = None) -> list[dict[str, Any]]:
    """The results; with the job's definition, each with its description, role and ObsCore metadata;
    with ``entities`` ({result id: (entity id, store URL)}), its entity in the result store."""
    out = []
    for r in job.results:
        item: dict[str, Any] = {"id": r.result_id, "href": result_url(job_url, r), "size": r.size,
                                "mimeType": r.content_type, "sha256": r.sha256}
        if entities and r.result_id in entities:
            item["entity"], item["store"] = entities[r.result_id]
        desc = jobdef.result_description(r.result_id, r.file_name) if jobdef is not None else None
        if desc is not None:
            item.update(name=desc.name, description=desc.description, role=desc.role, obscore=desc.obscore)
        out.append(item)
    return out


def joblist_json(refs: Iterable[JobRef], list_url: str) -> dict[str, Any]:
    return {"jobs": [_jobref_json(r, list_url) for r in refs]}


def _jobref_json(r: JobRef, list_url: str) -> dict[str, Any]:
    return {"jobId": r.job_id, "jobName": r.jobname, "phase": r.phase.value, "runId": r.run_id,
            "ownerId": r.owner_id, "creationTime": r.created,
            "href": urls.job_in_list(list_url, r.job_id)}


def joblist_json_chunks(refs: Iterable[JobRef], list_url: str, per_chunk: int = 1000) -> Iterator[str]:
    """``joblist_json`` as JSON text in pieces, for streaming long lists."""
    parts = ['{"jobs": [']
    first = True
    for r in refs:
        parts.append(("" if first else ", ") + json.dumps(_jobref_json(r, list_url)))
        first = False
        if len(parts) >= per_chunk:
            yield "".join(parts)
            parts.clear()
    parts.append("]}")
    yield "".join(parts)
