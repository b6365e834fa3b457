"""Inputs (a definition's ``used`` entities) as a client submits them: checked at submission.

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
input as a local file whose path is in the input's environment variable.  Staging those files when
the job is prepared is the dispatcher's (``opus.managers.staging``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from opus.auth.identity import Identity, can_access
from opus.errors import BadRequest, Forbidden, NotFound
from opus.jobdef.model import UsedDescription, describe_multiplicity, multiplicity_range
from opus.managers.staging import HTTP_URL as _HTTP
from opus.settings import Settings
from opus.storage.entitystore import EntityStore
from opus.uws import ID_PATTERN, Parameter

#: An entity of this server's result store, by URL: <base>/store/<id>[/<file name>] or <base>/store?ID=<id>.
_STORE = re.compile(f"^/store(?:/({ID_PATTERN})(?:/[^/?#]*)?|\\?ID=({ID_PATTERN}))\\Z")
_IDENTIFIER = re.compile(r"^[^\s\x00-\x1f]{1,1024}\Z")


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
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


class InputResolver:
    """Checks inputs at submission (the dispatcher stages them: ``opus.managers.staging``)."""

    def __init__(self, settings: Settings, entities: EntityStore | None = None):
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

    def check(self, used: UsedDescription, given: list[str], identity: Identity | None = None,
              base: str | None = None, links: dict[str, dict[str, str]] | None = None) -> Parameter:
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
            if self.entities is not None and entity_id is not None:
                self._check_entity(self.entities, where, entity_id, identity)
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

    @staticmethod
    def _check_entity(entities: EntityStore, where: str, entity_id: str, identity: Identity | None) -> None:
        """An input naming an entity of this store: it exists, the caller may read it, it has a file."""
        entity = entities.get(entity_id)
        if entity is None:
            raise NotFound(f"{where}: no entity {entity_id} in this server's store")
        if identity is not None and not can_access(identity, entity.owner_key):
            raise Forbidden(f"{where}: the entity {entity_id} belongs to someone else")
        if not entity.available:
            raise BadRequest(f"{where}: the entity {entity_id} no longer has a file (its job was deleted)")

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
