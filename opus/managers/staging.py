"""Staging a job's inputs into its directory, when the dispatcher prepares it.

What a client gave was checked at submission (``opus.service.inputs``); here it becomes files:

* an upload is already in the job's ``uploads/`` (saved at creation);
* an entity of this server's store (a ``/store`` URL) is linked in now (a hard link, or a copy across
  file systems) and recorded in ``linked.json``;
* an ``http``/``https`` URL, or an identifier turned into one by the definition's template, is left
  for the job wrapper to fetch before the script starts (``fetch`` in job.json, with
  ``fetch_hosts``), never inside a request.

Only the server names files: the script receives paths OPUS chose, never one chosen by the client.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from opus.jobdef.model import JobDefinition, UsedDescription
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.storage.jobfiles import JobFiles, read_json, write_json
from opus.uws import Parameter

#: An http(s) URL, as a client gives an input (the submission checks use the same rule).
HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)


class InputError(Exception):
    """An input that cannot be provided to the job (it then ends in ERROR with this message)."""


@dataclass
class Fetch:
    """One file the wrapper downloads before the script starts."""

    name: str
    url: str
    path: str


class InputStager:
    """Plans the inputs of a job being prepared: links store entities in, lists what to fetch."""

    def __init__(self, settings: Settings, entities: EntityStore):
        self.settings = settings
        self.entities = entities

    def plan(self, jobdef: JobDefinition, values: dict[str, Parameter], files: JobFiles,
             seen_from: JobFiles) -> tuple[dict[str, str], list[Fetch]]:
        """(environment values for the inputs, files to fetch); paths as the wrapper will see them.

        Inputs that are entities of this store are linked into the job's uploads now and recorded
        in ``linked.json``.
        """
        environment: dict[str, str] = {}
        fetches: list[Fetch] = []
        links: dict[str, dict[str, str]] = read_json(files.store_links, {})
        linked: dict[str, list[str]] = {}
        for name, used in jobdef.used.items():
            p = values.get(name)
            if p is None:
                if used.default is not None:
                    environment[name] = used.default
                continue
            if p.by_reference and p.value.startswith("param:"):
                environment[name] = str(seen_from.upload(name))
                continue
            shown = []
            items = p.value.split()
            for index, item in enumerate(items, 1):
                file_name = name if len(items) == 1 else f"{name}.{index}"
                entity_id = links.get(name, {}).get(item)
                if entity_id is not None:
                    self._link(name, entity_id, files.upload(file_name), linked)
                else:
                    url = self._url(name, used, item)
                    files.upload(file_name)  # checks the name
                    fetches.append(Fetch(name, url, str(seen_from.upload(file_name))))
                shown.append(str(seen_from.upload(file_name)))
            environment[name] = " ".join(shown)
        if linked:
            write_json(files.linked_record, linked)
        return environment, fetches

    @staticmethod
    def _url(name: str, used: UsedDescription, item: str) -> str:
        """Where the wrapper fetches ``item`` (a URL, or an identifier through the definition's template)."""
        if HTTP_URL.match(item):
            return item
        if used.url:
            return used.url.replace("$ID", quote(item, safe=""))
        # Stored before identifiers without a template were refused: never handed over as a path.
        raise InputError(f"input {name!r}: {item[:80]!r} is not a file this server can stage "
                         "(no identifier template)")

    def _link(self, name: str, entity_id: str, dest: Path, linked: dict[str, list[str]]) -> None:
        entity = self.entities.get(entity_id)
        if entity is None or entity.location is None:
            raise InputError(f"input {name!r}: the entity {entity_id} no longer has a file (its job was deleted)")
        source = self.settings.jobs_dir / entity.location
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.unlink(missing_ok=True)
        try:
            os.link(source, dest)
        except OSError:
            try:
                shutil.copyfile(source, dest)
            except OSError as exc:
                raise InputError(f"input {name!r}: cannot read the entity {entity_id}: {exc}") from None
        linked.setdefault(name, []).append(entity_id)

    def fetch_hosts(self, jobdef: JobDefinition) -> list[str]:
        """The hosts the wrapper may fetch from (and be redirected to) for this definition."""
        hosts = list(self.settings.INPUT_URL_HOSTS)
        for used in jobdef.used.values():
            if used.url:
                host = urlsplit(used.url.replace("$ID", "x")).hostname
                if host and host not in hosts:
                    hosts.append(host)
        return hosts
