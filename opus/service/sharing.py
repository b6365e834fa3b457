"""Sharing: signed, expiring, revocable links to one file, and jobs shared read-only with named users.

**Share links.**  The owner of an entity (a job's result, a job's input, any ``/store`` entity: see
``opus.storage.entitystore``) creates a link; whoever holds it may read that one file, without
credentials, until the link expires or its owner revokes it.  The link is
``<base>/share/<link id>.<signature>/<file name>``: the link id is 128 random bits, the signature an
HMAC-SHA256 (under a key derived from the server secret) of the link id and its expiry.  The
signature is not stored, so the database alone makes no working link; an expiry edited in the
database breaks the signature.  A link gives the file and nothing else: no job, no other entity, no
listing, no identity.  A forged or unknown link is 403; an expired or revoked one, or one whose file
was deleted with its job, 410.

**Jobs shared with users and groups.**  A job's owner may share it read-only with named users, or
with a group (grantee key ``group:<name>``): they, or every member of the group, may read the job
(its description, parameters, results and their files) at ``/shared/<jobname>/<job id>``, never
change it; the owner lists and withdraws the shares.  Membership is the caller's groups as stored
with the user (``opus.auth.users.User.groups``, on the ``Identity`` the request was authenticated
with: no extra query), read at each access: a member who leaves the group loses access at once, one
who joins gains it.  A group nobody belongs to may be shared with (groups come from admins or the
identity provider); its name must be valid.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from opus.auth.identity import Identity, can_access, server_secret
from opus.auth.users import USER_NAME, User, check_group_name, group_key
from opus.errors import BadRequest, Forbidden, Gone, NotFound
from opus.settings import Settings
from opus.storage import JobStore
from opus.storage.entitystore import Entity, EntityStore
from opus.storage.sharestore import JobShare, ShareLink, ShareStore
from opus.storage.userstore import UserStore
from opus.timeutil import utcnow
from opus.uws import ID_RE, Job

#: A link's lifetime when none is asked for (capped by SHARE_MAX_LIFETIME).
DEFAULT_LIFETIME = 7 * 86400
_TOKEN = re.compile(r"^([0-9a-f]{32})\.([0-9a-f]{32})\Z")
_ID = ID_RE  # a job's or an entity's id (16 hex digits; shorter when kept by opus migrate)
_NAME = re.compile(r"^[^\x00-\x1f\x7f/]{1,255}\Z")  # a result id or an input name


def _checked(value: str | None, pattern: re.Pattern[str], what: str) -> None:
    if value is not None and not pattern.match(value):
        raise NotFound(f"no {what} {value[:40]!r}")


@dataclass(frozen=True)
class Target:
    """What a new link should give: an entity by id, or a job's result or input by name."""

    entity_id: str | None = None
    job_id: str | None = None
    result: str | None = None
    input: str | None = None


class SharingService:
    """Creates, resolves and revokes share links; shares jobs with users."""

    def __init__(self, settings: Settings, shares: ShareStore, entities: EntityStore, jobs: JobStore,
                 users: UserStore) -> None:
        self.settings = settings
        self.shares = shares
        self.entities = entities
        self.jobs = jobs
        self.users = users

    # ---- links ---------------------------------------------------------------------------------
    def _signature(self, link_id: str, expires: datetime) -> str:
        key = hmac.new(server_secret(self.settings), b"opus share links", hashlib.sha256).digest()
        message = f"{link_id}:{int(expires.timestamp())}".encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]

    def token(self, link: ShareLink) -> str:
        """The secret part of a link's URL: ``<link id>.<signature>``."""
        return f"{link.link_id}.{self._signature(link.link_id, link.expires)}"

    def create(self, identity: Identity, target: Target,
               lifetime: int | None = None) -> tuple[ShareLink, Entity]:
        """A new link to ``target``, which the caller must own; lives ``lifetime`` seconds (capped)."""
        entity, label = self._target(identity, target)
        if not entity.available:
            raise Gone(f"the file of entity {entity.entity_id} was deleted with its job: nothing to share")
        seconds = DEFAULT_LIFETIME if lifetime is None else lifetime
        if seconds <= 0:
            raise BadRequest("lifetime: a number of seconds > 0")
        seconds = min(seconds, self.settings.SHARE_MAX_LIFETIME)
        now = utcnow().replace(microsecond=0)
        link = ShareLink(secrets.token_hex(16), entity.entity_id, identity.owner_key, identity.name, label,
                         now, now + timedelta(seconds=seconds), None)
        self.shares.add_link(link)
        return link, entity

    def _target(self, identity: Identity, target: Target) -> tuple[Entity, str]:
        """The entity ``target`` names, checked as the caller's; and a label for the owner's list."""
        for value, pattern, what in ((target.entity_id, _ID, "entity"), (target.job_id, _ID, "job"),
                                     (target.result, _NAME, "result"), (target.input, _NAME, "input")):
            _checked(value, pattern, what)
        if target.entity_id is not None:
            if target.job_id or target.result or target.input:
                raise BadRequest("give entity alone, or job with result or input")
            entity = self._entity(identity, target.entity_id)
            return entity, f"{entity.file_name} (entity {entity.entity_id})"
        if not target.job_id or (target.result is None) == (target.input is None):
            raise BadRequest("say what to share: entity=<entity id>, or job=<job id> with result=<result id> "
                             "or input=<input name>")
        job = self.jobs.get(target.job_id)
        if job is None:
            raise NotFound(f"no job {target.job_id[:40]!r}")
        if not can_access(identity, job.owner_key):
            raise Forbidden(f"job {job.job_id} belongs to someone else")
        if target.result is not None:
            found = [e for e in self.entities.generated_by([job.job_id]) if e.role == target.result]
            what = f"result {target.result[:64]!r}"
        else:
            ids = [eid for _job, role, eid in self.entities.used_by([job.job_id]) if role == target.input]
            found = list(self.entities.get_many(ids).values())
            what = f"input {str(target.input)[:64]!r}"
        if not found:
            raise NotFound(f"job {job.job_id} has no {what} in the store (stored when the job ends)")
        entity = found[0]
        return self._entity(identity, entity.entity_id), f"{what} of {job.jobname} job {job.job_id}"

    def _entity(self, identity: Identity, entity_id: str) -> Entity:
        entity = self.entities.get(entity_id)
        if entity is None:
            raise NotFound(f"no entity {entity_id[:40]!r} in the store")
        if not can_access(identity, entity.owner_key):
            raise Forbidden(f"the entity {entity_id} belongs to someone else")
        return entity

    def resolve(self, token: str) -> Entity:
        """The entity a link gives: 403 for a forged or unknown link, 410 once expired or revoked."""
        m = _TOKEN.match(token)
        link = self.shares.link(m.group(1)) if m else None
        if m is None or link is None or not hmac.compare_digest(self._signature(link.link_id, link.expires),
                                                                  m.group(2)):
            raise Forbidden("this is not a valid share link")
        if link.revoked is not None:
            raise Gone("this share link was revoked by its owner")
        if link.expires <= utcnow():
            raise Gone("this share link has expired")
        entity = self.entities.get(link.entity_id)
        if entity is None or not entity.available:
            raise Gone("the shared file was deleted with its job")
        return entity

    def links(self, identity: Identity) -> list[ShareLink]:
        """The caller's links, newest first (an admin's: everyone's)."""
        return self.shares.links(identity.owner_key, everyone=identity.is_admin)

    def revoke(self, identity: Identity, link_id: str) -> ShareLink:
        """Revoke a link (its creator or an admin); revoking it again changes nothing."""
        link = self.shares.link(link_id)
        if link is None:
            raise NotFound(f"no share link {link_id[:40]!r}")
        if not can_access(identity, link.owner_key):
            raise Forbidden("this share link belongs to someone else")
        self.shares.revoke(link_id, utcnow())
        revoked = self.shares.link(link_id)
        assert revoked is not None
        return revoked

    # ---- jobs shared with users ------------------------------------------------------------------
    def _job(self, jobname: str, job_id: str) -> Job:
        _checked(job_id, _ID, "job")
        job = self.jobs.get(job_id)
        if job is None or job.jobname != jobname:
            raise NotFound(f"no job {job_id[:40]!r} in {jobname[:64]!r}")
        return job

    def _own_job(self, identity: Identity, jobname: str, job_id: str) -> Job:
        job = self._job(jobname, job_id)
        if not can_access(identity, job.owner_key):
            raise Forbidden(f"job {job_id!r} belongs to someone else")
        return job

    def _user(self, user_name: str) -> User:
        _checked(user_name, USER_NAME, "user")
        user = self.users.get(user_name)
        if user is None or user.uid is None:
            raise NotFound(f"no user {user_name[:64]!r}")
        return user

    def grant(self, identity: Identity, jobname: str, job_id: str, user_name: str) -> JobShare:
        """Share the caller's job read-only with the user ``user_name``."""
        job = self._own_job(identity, jobname, job_id)
        user = self._user(user_name)
        key = user.owner_key
        if key == job.owner_key:
            raise BadRequest("the job is already yours: share it with someone else")
        share = JobShare(job.job_id, key, user.name, utcnow())
        self.shares.grant(share)
        return share

    def ungrant(self, identity: Identity, jobname: str, job_id: str, user_name: str) -> None:
        job = self._own_job(identity, jobname, job_id)
        self.shares.ungrant(job.job_id, self._user(user_name).owner_key)  # again: nothing to do

    def grant_group(self, identity: Identity, jobname: str, job_id: str, group: str) -> JobShare:
        """Share the caller's job read-only with every member of ``group`` (now and later)."""
        job = self._own_job(identity, jobname, job_id)
        share = JobShare(job.job_id, group_key(check_group_name(group)), group, utcnow())
        self.shares.grant(share)
        return share

    def ungrant_group(self, identity: Identity, jobname: str, job_id: str, group: str) -> None:
        job = self._own_job(identity, jobname, job_id)
        self.shares.ungrant(job.job_id, group_key(check_group_name(group)))  # again: nothing to do

    def grantees(self, identity: Identity, jobname: str, job_id: str) -> list[JobShare]:
        """The job's shares, with users and with groups (``JobShare.group``)."""
        return self.shares.shares_of(self._own_job(identity, jobname, job_id).job_id)

    @staticmethod
    def _grantee_keys(identity: Identity) -> list[str]:
        """What a share must name to give the caller a job: its owner key, or one of its groups."""
        if identity.owner_key is None:
            return []
        return [identity.owner_key, *(group_key(g) for g in sorted(identity.groups))]

    def shared_job(self, identity: Identity, jobname: str, job_id: str) -> Job:
        """A job the caller owns or that was shared with them or one of their groups (read-only use only)."""
        job = self._job(jobname, job_id)
        if not can_access(identity, job.owner_key) and not self.shares.is_shared(job_id, self._grantee_keys(identity)):
            raise Forbidden(f"job {job_id!r} is neither yours nor shared with you")
        return job

    def shared_with(self, identity: Identity) -> list[tuple[JobShare, Job]]:
        """The jobs shared with the caller or their groups that still exist, newest share first; a job
        shared both ways once, by its share with the caller (``JobShare.group`` None) if there is one."""
        chosen: dict[str, JobShare] = {}
        for share in self.shares.shared_with(self._grantee_keys(identity)):
            known = chosen.get(share.job_id)
            if known is None or (known.group is not None and share.group is None):
                chosen[share.job_id] = share
        out = []
        for share in sorted(chosen.values(), key=lambda s: s.created, reverse=True):
            job = self.jobs.get(share.job_id)
            if job is not None:
                out.append((share, job))
        return out
