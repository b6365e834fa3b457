"""Which jobs (activities) and entities a provenance answer holds: a walk over the result store.

One **step** follows one relation in the asked direction:

* BACK:  entity -> the activity that generated it (wasGeneratedBy);
         activity -> each entity it used (used);
* FORTH: entity -> each activity that used it (used);
         activity -> each entity it generated (wasGeneratedBy).

DEPTH n keeps what is at most n steps from the given ids (0: the ids alone; None: ALL, until
nothing new comes).  A finite DEPTH walks one level at a time, with one batched query per kind of
step and level; ALL is one recursive query (``EntityStore.reachable``).  Both stop at whatever the
caller may not see (``can_access``): another user's job or entity is neither shown nor walked
through.  The answer then holds every used / wasGeneratedBy
relation between the nodes kept.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from opus.auth.identity import Identity, can_access
from opus.storage.entitystore import Entity, EntityStore
from opus.storage.jobstore import JobStore
from opus.uws import Job

@dataclass
class Selection:
    jobs: dict[str, Job] = field(default_factory=dict)
    entities: dict[str, Entity] = field(default_factory=dict)
    used: list[tuple[str, str, str]] = field(default_factory=list)         # (job id, role, entity id)
    deleted_jobs: set[str] = field(default_factory=set)  # generators of kept entities that no longer exist

    def generated(self) -> list[tuple[str, str, str]]:
        """(entity id, job id, role) of every wasGeneratedBy between kept nodes."""
        return [(e.entity_id, e.generated_by, e.role) for e in self.entities.values()
                if e.generated_by is not None and e.generated_by in self.jobs]


def select(jobstore: JobStore, entitystore: EntityStore, who: Identity, ids: Collection[str],
           depth: int | None, direction: str, with_results: bool = False) -> Selection:
    """The nodes within ``depth`` steps of ``ids`` (job or entity ids; unknown or hidden ones are left out).

    ``with_results``: also keep the results of the given jobs (a job's own provenance page).
    """
    sel = Selection()
    jobs = {j: job for j, job in jobstore.get_many(ids).items() if can_access(who, job.owner_key)}
    ents = {e: ent for e, ent in entitystore.get_many(set(ids) - set(jobs)).items()
            if can_access(who, ent.owner_key)}
    sel.jobs.update(jobs)
    sel.entities.update(ents)
    if with_results:
        sel.entities.update({e.entity_id: e for e in entitystore.generated_by(jobs)
                             if can_access(who, e.owner_key)})
    frontier_jobs, frontier_ents = set(jobs), set(ents)
    used_of: dict[str, list[tuple[str, str, str]]] = {}  # job id -> its used rows, once read
    if depth is None and (frontier_jobs or frontier_ents):
        # ALL: the whole walk in one recursive query (a chain of 1,000 jobs is 2,000 levels).
        job_ids, entity_ids = entitystore.reachable(frontier_jobs, frontier_ents, direction,
                                                    owner_key=who.owner_key, any_owner=who.is_admin)
        sel.jobs.update((j, job) for j, job in jobstore.get_many(set(job_ids) - set(sel.jobs)).items()
                        if can_access(who, job.owner_key))
        sel.entities.update((e, ent) for e, ent in entitystore.get_many(set(entity_ids) - set(sel.entities)).items()
                            if can_access(who, ent.owner_key))
        frontier_jobs = frontier_ents = set()
    level = 0
    while (frontier_jobs or frontier_ents) and (depth is None or level < depth):
        level += 1
        new_jobs: set[str] = set()
        new_ents: dict[str, Entity] = {}
        if direction == "BACK":
            new_jobs = {generator for e in frontier_ents
                        if (generator := sel.entities[e].generated_by) is not None} - set(sel.jobs)
            rows = entitystore.used_by(frontier_jobs)
            for row in rows:
                used_of.setdefault(row[0], []).append(row)
            wanted = {r[2] for r in rows} - set(sel.entities)
            new_ents = entitystore.get_many(wanted) if wanted else {}
        else:
            new_jobs = {r[0] for r in entitystore.users_of(frontier_ents)} - set(sel.jobs)
            new_ents = {e.entity_id: e for e in entitystore.generated_by(frontier_jobs)
                        if e.entity_id not in sel.entities}
        found = jobstore.get_many(new_jobs) if new_jobs else {}
        frontier_jobs = {j for j, job in found.items() if can_access(who, job.owner_key)}
        frontier_ents = {e for e, ent in new_ents.items() if can_access(who, ent.owner_key)}
        sel.jobs.update((j, found[j]) for j in frontier_jobs)
        sel.entities.update((e, new_ents[e]) for e in frontier_ents)
    # The relations between the nodes kept, and what became of the generators left out.
    unread = [j for j in sel.jobs if j not in used_of]
    for row in entitystore.used_by(unread) if unread else []:
        used_of.setdefault(row[0], []).append(row)
    sel.used = [row for j in sel.jobs for row in used_of.get(j, ()) if row[2] in sel.entities]
    outside = {e.generated_by for e in sel.entities.values()
               if e.generated_by is not None and e.generated_by not in sel.jobs}
    if outside:
        sel.deleted_jobs = outside - set(jobstore.get_many(outside))
    return sel
