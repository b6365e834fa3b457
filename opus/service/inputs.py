"""Inputs (a definition's ``used`` entities): uploaded files, URLs and identifiers.

A client gives an input as

* a file (multipart upload): saved at creation, streamed to disk and hashed;
* an ``http``/``https`` URL: checked against ``INPUT_URL_HOSTS`` at creation, fetched by the job
  wrapper before the script starts (never inside the request), with a timeout and a size limit;
* an identifier: when the definition gives a URL template (``url`` with ``$ID``), the template's URL
  is fetched the same way; without a template an identifier is refused (400).
* a URL of this server's result store (``/store/<id>``): the entity's file is linked into the job.

Only the server names files: whatever the client gives, the script receives the path of a file that
OPUS staged into the job's ``uploads/`` (and mounted read-only in the job's sandbox), never a path
or name chosen by the client.

A multi-valued input (``multiplicity``) takes several URLs or identifiers separated by spaces; the
script then receives the paths separated by spaces.  The script always sees a fetched or uploaded
input as a local file whose path is in the input's environment variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from opus.errors import BadRequest, Forbidden, NotFound
from opus.jobdef.model import JobDefinition, UsedDescription, describe_multiplicity, multiplicity_range
from opus.storage.jobfiles import JobFiles, read_json, write_json
from opus.auth.identity import can_access
from opus.uws import Parameter
_HTTP = re.compile(r"^https?://", re.IGNORECASE)
#: An entity of this server's result store, by URL: <base>/store/<id>[/<file name>] or <base>/store?ID=<id>.
_STORE = re.compile(r"^/store(?:/([0-9a-f]{16})(?:/[^/?#]*)?|\?ID=([0-9a-f]{16}))\Z")
_IDENTIFIER = re.compile(r"^[^\s\x00-\x1f]{1,1024}\Z")


def host_allowed(host: str, allowed: tuple[str, ...] | list[str]) -> bool:
    """Whether ``host`` matches the allow-list: exact names, ``.suffix`` domains or ``*``.

    ``*`` admits any host whose address is public; the job wrapper checks the resolved addresses.
    A literal private, loopback or link-local address is only admitted when listed exactly.
    """
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry == host or (entry.startswith(".") and host.endswith(entry)):
            return True
    if "*" in allowed:
        try:
            return ipaddress.ip_address(host.strip("[]")).is_global
        except ValueError:
            return True  # a name: its addresses are checked when it is fetched
    return False


class InputError(Exception):
    """An input that cannot be provided to the job (it then ends in ERROR with this message)."""


@dataclass
class Fetch:
    """One file the wrapper downloads before the script starts."""

    name: str
    url: str
    path: str


class InputResolver:
    """Checks inputs at creation and plans their fetching when the job is prepared."""

    def __init__(self, settings, entities=None):
        self.settings = settings
        self.entities = entities

    def store_entity(self, url: str, base: str | None) -> str | None:
        """The entity id if ``url`` names an entity of this server's store (``base`` is its URL)."""
        bases = {b.rstrip("/") for b in (base, self.settings.BASE_URL, self.settings.RESULTS_BASE_URL) if b}
        for b in bases:
            if url.startswith(b + "/store"):
                m = _STORE.match(url[len(b):])
                if m:
                    return m.group(1) or m.group(2)
        return None

    def check(self, used: UsedDescription, given: list[str], identity=None, base: str | None = None,
              links: dict | None = None) -> Parameter:
        """The parameter for input ``used`` given as form values (URLs or identifiers).

        URLs of this server's store are checked like any access to the entity and recorded in
        ``links`` ({input name: {url: entity id}}): the job uses that entity, nothing is fetched.
        """
        where = f"input {used.name!r}"
        items = [item for value in given for item in value.split()]
        low, high = multiplicity_range(used.multiplicity)
        if len(items) < max(low, 1) or (high is not None and len(items) > high):
            raise BadRequest(f"{where}: {len(items)} value(s) given; it takes "
                             f"{describe_multiplicity(used.multiplicity) if high != 1 else 'one value'}")
        for item in items:
            entity_id = self.store_entity(item, base) if self.entities is not None else None
            if entity_id is not None:
                entity = self.entities.get(entity_id)
                if entity is None:
                    raise NotFound(f"{where}: no entity {entity_id} in this server's store")
                if identity is not None and not can_access(identity, entity.owner_key):
                    raise Forbidden(f"{where}: the entity {entity_id} belongs to someone else")
                if not entity.available:
                    raise BadRequest(f"{where}: the entity {entity_id} no longer has a file (its job was deleted)")
                if links is not None:
                    links.setdefault(used.name, {})[item] = entity_id
            elif _HTTP.match(item):
                self.check_url(where, item)
            elif not _IDENTIFIER.match(item):
                raise BadRequest(f"{where}: {item[:80]!r} is neither an http(s) URL nor an identifier")
            elif not used.url:
                # Never a path: a client's string must not name a file for the script to read.
                raise BadRequest(f"{where}: {item[:80]!r} is not a file: this input takes an uploaded file, "
                                 "an http(s) URL or a URL of this server's /store (it has no identifier "
                                 "template)")
        by_reference = all(_HTTP.match(item) for item in items)
        return Parameter(used.name, " ".join(items), by_reference=by_reference)

    def check_url(self, where: str, url: str) -> None:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise BadRequest(f"{where}: {url[:200]!r} is not a valid URL") from None
        if not parts.hostname:
            raise BadRequest(f"{where}: {url[:200]!r} names no host")
        if parts.username or parts.password:
            raise BadRequest(f"{where}: URLs with a user name or password are refused (they would be stored "
                             "and shown as the job's parameter)")
        allowed = self.settings.INPUT_URL_HOSTS
        if not allowed:
            raise BadRequest(f"{where}: this server fetches no URLs given by clients (INPUT_URL_HOSTS is "
                             "empty): upload the file instead")
        if not host_allowed(parts.hostname, allowed):
            raise BadRequest(f"{where}: host {parts.hostname!r} is not one this server fetches from; "
                             "allowed: " + ", ".join(allowed))

    # ---- at preparation ------------------------------------------------------------------------------
    def plan(self, jobdef: JobDefinition, values: dict[str, Parameter], files: JobFiles,
             seen_from: JobFiles) -> tuple[dict[str, str], list[Fetch]]:
        """(environment values for the inputs, files to fetch); paths as the wrapper will see them.

        Inputs that are entities of this store are linked into the job's uploads now (a hard link,
        or a copy across file systems) and recorded in ``linked.json``.
        """
        environment: dict[str, str] = {}
        fetches: list[Fetch] = []
        links = read_json(files.store_links, {})
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
            items = p.value.split()
            shown = []
            for index, item in enumerate(items, 1):
                file_name = name if len(items) == 1 else f"{name}.{index}"
                entity_id = links.get(name, {}).get(item)
                if entity_id is not None:
                    self._link(name, entity_id, files.upload(file_name), linked)
                    shown.append(str(seen_from.upload(file_name)))
                    continue
                if _HTTP.match(item):
                    url = item
                elif used.url:
                    url = used.url.replace("$ID", quote(item, safe=""))
                else:
                    # Stored before identifiers without a template were refused: never handed over as a path.
                    raise InputError(f"input {name!r}: {item[:80]!r} is not a file this server can stage "
                                     "(no identifier template)")
                files.upload(file_name)  # checks the name
                fetches.append(Fetch(name, url, str(seen_from.upload(file_name))))
                shown.append(str(seen_from.upload(file_name)))
            environment[name] = " ".join(shown)
        if linked:
            write_json(files.linked_record, linked)
        return environment, fetches

    def _link(self, name: str, entity_id: str, dest, linked: dict[str, list[str]]) -> None:
        entity = self.entities.get(entity_id) if self.entities is not None else None
        if entity is None or not entity.available:
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
