"""IVOA Provenance (ProvDM) of jobs and results, built from the database when asked.

* ``options``   the query parameters (ID, DEPTH, DIRECTION, MODEL, AGENTS, DESCRIPTIONS,
                CONFIGURATION, RESPONSEFORMAT / format), checked;
* ``traverse``  which jobs and entities an answer holds (DEPTH steps BACK or FORTH, batched per
                level, stopping at what the caller may not see);
* ``model``     the ProvDocument (``prov`` package) in the IVOA (voprov) or W3C model;
* ``writers``   PROV-N, PROV-JSON, PROV-XML, PROV-VOTABLE, SVG and PNG.

``docs/provenance.md`` describes the model, the endpoints and the DEPTH semantics.
"""

from __future__ import annotations

from typing import Protocol

from prov.model import ProvDocument

from opus.auth.identity import Identity
from opus.jobdef.registry import JobDefinitionRegistry
from opus.provenance.model import STEPS_FILE, Builder
from opus.provenance.options import FORMATS, ProvOptions, job_options, provsap_options
from opus.provenance.traverse import Selection, select
from opus.provenance.writers import serialize
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobstore import JobStore

__all__ = ["FORMATS", "STEPS_FILE", "Builder", "ProvOptions", "ProvSources", "Selection", "build",
           "job_options", "provsap_options", "select", "serialize"]


class ProvSources(Protocol):
    """What provenance is read from: the composition root (``opus.service.root.Root``) has these."""

    settings: Settings
    store: JobStore
    entities: EntityStore
    registry: JobDefinitionRegistry


def build(services: ProvSources, who: Identity, options: ProvOptions, base: str,
          with_results: bool = False) -> ProvDocument:
    """The ProvDocument answering ``options`` for the caller ``who``."""
    sel = select(services.store, services.entities, who, options.ids, options.depth, options.direction,
                 with_results=with_results)
    builder = Builder(base, model=options.model, agents=options.agents, descriptions=options.descriptions,
                      configuration=options.configuration, registry=services.registry,
                      jobs_dir=services.settings.jobs_dir)
    return builder.build(sel)
