"""User administration: what `opus user ...` and the admin REST API both call.

New tokens are hashed with the key of the store's settings (``UserStore.token_key``).  Deleting a user
keeps what it owned under its id, which no later user gets: a name re-created is a new account.
"""

from __future__ import annotations

from collections.abc import Callable

from opus.errors import BadRequest, Forbidden, NotFound
from opus.storage.userstore import UserExists, UserStore
from opus.timeutil import utcnow
from opus.auth.users import User, check_user_name, new_token, parse_groups, parse_jobdefs

#: ``update``'s default for max_active_jobs: "leave it as it is" (None means "no limit").
UNCHANGED = ...


class UserAdmin:
    """``known(name)``: whether a job definition of that name exists; given, granting (or allowing
    at creation) a definition that does not is refused with 400 (revoking one never is)."""

    def __init__(self, users: UserStore, known: Callable[[str], bool] | None = None) -> None:
        self.users = users
        self.known = known

    def _granted(self, value: object, already: frozenset[str] | set[str] = frozenset()) -> set[str]:
        """Job definition names to allow, each known when ``known`` was given (except those ``already``
        allowed: a list saved again may keep the name of a definition removed since)."""
        names = parse_jobdefs(value)
        unknown = sorted(n for n in names - set(already) - {"*"} if self.known is not None and not self.known(n))
        if unknown:
            raise BadRequest(f"no job definition named {', '.join(repr(n) for n in unknown)}: "
                             "`opus jdl list` (or GET /jdl) shows those that exist")
        return names

    def add(self, name: str, admin: bool = False, jobdefs: object = "*",
            max_active_jobs: object = None, editor: bool = False, groups: object = None) -> tuple[User, str]:
        """Create a user; returns it with its token (shown once, never stored).  ``groups``: a list or
        a comma-separated string of group names (``opus.auth.users.parse_groups``)."""
        check_user_name(name)
        token, token_id, token_hash = new_token(self.users.token_key)
        user = User(name=name, is_admin=bool(admin), enabled=True, max_active_jobs=_limit(max_active_jobs),
                    jobdefs=self._granted(jobdefs) or {"*"}, token_id=token_id, token_hash=token_hash,
                    created=utcnow(), is_editor=bool(editor), groups=parse_groups(groups))
        try:
            self.users.add(user)
        except UserExists:
            raise BadRequest(f"user {name!r} exists already") from None
        return user, token

    def get(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    def list(self) -> list[User]:
        return self.users.all()

    def update(self, name: str, *, enabled: bool | None = None, admin: bool | None = None,
               jobdefs: object = None, grant: object = None, revoke: object = None,
               max_active_jobs: object = UNCHANGED, editor: bool | None = None, groups: object = UNCHANGED) -> User:
        """Change a user; ``jobdefs``, ``grant``, ``revoke``, ``max_active_jobs`` and ``groups`` (the
        new groups, replacing the old: "" or [] none) are as given by the REST API's JSON or the
        command line (checked here)."""
        user = self.get(name)
        fields: dict[str, object] = {}
        if enabled is not None:
            fields["enabled"] = bool(enabled)
        if admin is not None:
            fields["is_admin"] = bool(admin)
        if editor is not None:
            fields["is_editor"] = bool(editor)
        if (enabled is False or admin is False) and user.is_admin and self.users.count_admins() <= 1:
            raise Forbidden(f"{name!r} is the last enabled admin: make another admin first")
        allowed = set(user.jobdefs)
        if jobdefs is not None:
            allowed = self._granted(jobdefs, user.jobdefs)
        if grant:
            allowed |= self._granted(grant)
        if revoke:
            allowed -= parse_jobdefs(revoke)
        if allowed != user.jobdefs:
            fields["jobdefs"] = allowed
        if max_active_jobs is not UNCHANGED:
            fields["max_active_jobs"] = _limit(max_active_jobs)
        if groups is not UNCHANGED:
            fields["groups"] = parse_groups(groups)
        if fields:
            self.users.update(name, **fields)
        return self.get(name)

    def new_token(self, name: str) -> str:
        """Replace the user's token (the old one stops working at once); returns the new one."""
        self.get(name)
        token, token_id, token_hash = new_token(self.users.token_key)
        self.users.update(name, token_id=token_id, token_hash=token_hash)
        return token

    def delete(self, name: str) -> None:
        user = self.get(name)
        if user.is_admin and user.enabled and self.users.count_admins() <= 1:
            raise Forbidden(f"{name!r} is the last enabled admin: make another admin first")
        self.users.delete(name)

    def ensure_admin(self) -> tuple[User, str] | None:
        """Create the first admin ("admin") when there is none; returns it with its token."""
        if self.users.count_admins():
            return None
        name = "admin"
        while self.users.get(name) is not None:
            name += "_"
        return self.add(name, admin=True)


def _limit(value: object) -> int | None:
    if value in (None, "", "none"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadRequest(f"maxActiveJobs: {value!r} is not an integer")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"maxActiveJobs: {value!r} is not an integer") from None
    if not 0 <= number <= 2 ** 31 - 1:
        raise BadRequest("maxActiveJobs must be from 0 to 2147483647")
    return number
