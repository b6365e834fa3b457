"""The original's users (its ``users`` table) as users here, with their roles and rights.

* ``roles`` (comma-separated definition names, ``all`` for every one) become the definitions the
  user may use; with the original's ``CHECK_PERMISSIONS = False`` (its default) nobody was checked,
  so every user may use every definition ("*").
* The original's ``ADMIN_NAME``, and the web client's accounts with its ``admin`` role
  (``db/flask_login.db``), become admins; its ``job_definition`` role (who could propose
  definitions) becomes the editor role.
* The web client named its accounts by e-mail address: a user whose name is a valid address gets it
  as their e-mail (notifications go there).
* ``active`` becomes ``enabled``.
* Tokens do not come across: the original stored them in clear and they have another form.  Each
  imported user gets a new token, written once to the tokens file (mode 0600) for the operator to
  hand out (or replace later with ``opus user token``).

Owners of jobs with no row in ``users`` get an account too, so that their jobs stay theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

from opus.auth.accounts import check_email
from opus.auth.users import USER_NAME, User, new_token
from opus.errors import BadRequest
from opus.migration.report import Report
from opus.migration.site import OriginalSite, parse_time, truthy
from opus.storage.userstore import UserExists, UserStore
from opus.timeutil import utcnow

ANONYMOUS = ("", "anonymous")
#: The original's internal accounts (its special_users): not people, not imported.
INTERNAL = ("job_event", "maintenance", "test_")


def _jobdefs(roles: object, check_permissions: bool, known: set[str], name: str, report: Report) -> set[str]:
    if not check_permissions:
        return {"*"}
    items = {r.strip() for r in str(roles or "").split(",") if r.strip()}
    if "all" in items:
        return {"*"}
    kept = {r for r in items if r in known}
    for role in sorted(items - kept):
        report.note(f"user {name}: role {role!r} names no imported definition; not kept")
    return kept


def _email(name: str) -> str | None:
    """The user's e-mail address when its name is one (the web client named accounts by address)."""
    try:
        return check_email(name) if "@" in name else None
    except BadRequest:
        return None


class Accounts:
    """Imports users; ``owner(name)`` is then (owner_id, owner_key) for the original's owner name."""

    def __init__(self, users: UserStore, tokens_file: Path, report: Report) -> None:
        self.users = users
        self.tokens_file = tokens_file
        self.report = report
        self.keys: dict[str, tuple[str | None, str | None]] = {}
        self.new_tokens: list[tuple[str, str]] = []
        self.editors: set[str] = set()

    def owner(self, name: object) -> tuple[str | None, str | None] | None:
        """(owner_id, owner_key) of an original owner; None: the owner could not be imported."""
        text = "" if name is None else str(name)
        if text in ANONYMOUS:
            return None, None
        return self.keys.get(text)

    def import_users(self, site: OriginalSite, known_jobdefs: set[str], owners: set[str]) -> None:
        client = site.client_roles()
        admins = {str(site.settings["ADMIN_NAME"])} | {n for n, roles in client.items() if "admin" in roles}
        self.editors = {n for n, roles in client.items() if "job_definition" in roles}
        check = truthy(site.settings.get("CHECK_PERMISSIONS"))
        rows = {str(r["name"]): r for r in site.rows("users") if r.get("name")}
        for name in sorted(set(rows) & set(ANONYMOUS + INTERNAL)):
            self.report.note(f"user {name}: one of the original's internal accounts; not imported")
            del rows[name]
        for owner in sorted(owners - set(rows) - set(ANONYMOUS)):
            rows[owner] = {"name": owner, "roles": "", "active": True, "first_connection": None}
            self.report.note(f"user {owner}: owns jobs but had no row in the original's users table; "
                             "an account is made so that the jobs stay theirs")
        for name, row in sorted(rows.items()):
            self._one(name, row, name in admins, _jobdefs(row.get("roles"), check, known_jobdefs, name, self.report))
        self._write_tokens()

    def _one(self, name: str, row: dict[str, object], admin: bool, jobdefs: set[str]) -> None:
        existing = self.users.get(name)
        if existing is not None:
            self.keys[name] = (name, existing.owner_key)
            self.report.skip(f"user {name} (exists here; left as it is)")
            return
        if not USER_NAME.match(name):
            self.report.fail(f"user {name!r}: not a valid user name here (letters, digits, '_', '.', '@', '-'; "
                             "at most 64); their jobs are not imported")
            return
        active = row.get("active")
        user = User(name=name, is_admin=admin, enabled=True if active is None else truthy(active), jobdefs=jobdefs,
                    created=parse_time(row.get("first_connection")) or utcnow(),
                    is_editor=name in self.editors, email=_email(name), email_verified=_email(name) is not None)
        rights = "admin" if admin else (" ".join(sorted(jobdefs)) or "no definition") \
            + (", editor" if user.is_editor else "")
        if self.report.dry_run:
            self.keys[name] = (name, f"user:(new {name})")
        else:
            token, user.token_id, user.token_hash = new_token(self.users.token_key)
            try:
                self.users.add(user)
            except UserExists:  # made meanwhile by someone else
                self.report.skip(f"user {name} (exists here; left as it is)")
                return
            self.keys[name] = (name, user.owner_key)
            self.new_tokens.append((name, token))
        self.report.did("users", f"user {name} ({rights}{'' if user.enabled else ', disabled'})")

    def _write_tokens(self) -> None:
        if not self.new_tokens:
            return
        self.tokens_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.tokens_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write("".join(f"{name}\t{token}\n" for name, token in self.new_tokens))
        self.report.note(f"the new tokens of {len(self.new_tokens)} user(s) are in {self.tokens_file} "
                         "(readable by you only): hand each to its user, then delete the file")
