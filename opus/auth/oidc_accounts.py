"""OpenID Connect sign-in, the accounts side: an ID token's claims -> an OPUS user (docs/single-sign-on.md).

* The identity is (issuer, ``sub``): once linked to a user (``oidc_identities``) it signs in as that user,
  whatever name the provider gives it later.
* An identity not linked yet: with OIDC_CREATE_USERS a user is created, named by the claim
  OIDC_USERNAME_CLAIM, with a random token that nobody sees (the profile page replaces it) and
  REGISTRATION_JOBDEFS.  A local account of that name is never taken over: the sign-in is refused, and
  an admin may link the identity to it (``link``: POST /admin/users/<name>/oidc).
* At every sign-in the groups claim (OIDC_GROUPS_CLAIM) is applied: the user's groups (the names that
  are valid group names), the admin and editor roles when OIDC_ADMIN_GROUPS / OIDC_EDITOR_GROUPS are
  set, the definitions a user may use when OIDC_JOBDEF_GROUPS is set.
* A disabled user is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from opus.auth.users import User, check_user_name, new_token, usable_groups
from opus.errors import BadRequest, Conflict, Forbidden, NotFound
from opus.settings import Settings
from opus.storage.oidcstore import IdentityTaken, OidcIdentity, OidcStore
from opus.storage.userstore import UserExists, UserStore
from opus.timeutil import utcnow

log = logging.getLogger(__name__)
MAX_SUBJECT = 255


def claimed_groups(claims: dict[str, Any], claim: str) -> list[str]:
    """The groups claim as a list of names (a JSON list of strings, or one space-separated string)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


class OidcAccounts:
    """Sign-in and linking of OpenID Connect identities, on one user store."""

    def __init__(self, users: UserStore, settings: Settings, token_key: bytes | None) -> None:
        self.users = users
        self.settings = settings
        self.identities = OidcStore(users.engine)
        self.token_key = token_key

    def sign_in(self, claims: dict[str, Any]) -> User:
        """The user that validated ``claims`` sign in as, its roles and rights updated from the groups claim."""
        issuer, subject = str(claims["iss"]), str(claims["sub"])
        if len(subject) > MAX_SUBJECT:
            raise Forbidden("the identity provider's subject is too long for this server")
        uid = self.identities.uid_of(issuer, subject)
        user = self.users.by_uid(uid) if uid is not None else self._first_sign_in(claims, issuer, subject)
        if user is None:  # the user was deleted between the two reads
            raise Forbidden("your account on this server was deleted: sign in again")
        if not user.enabled:
            raise Forbidden(f"the account {user.name!r} is disabled on this server: ask an admin")
        user = self._apply_groups(user, claimed_groups(claims, self.settings.OIDC_GROUPS_CLAIM))
        self.identities.signed_in(issuer, subject)
        return user

    def _first_sign_in(self, claims: dict[str, Any], issuer: str, subject: str) -> User:
        s = self.settings
        name = claims.get(s.OIDC_USERNAME_CLAIM)
        if not isinstance(name, str) or not name:
            raise Forbidden(f"the identity provider gave no {s.OIDC_USERNAME_CLAIM!r} claim, which names your "
                            "account here: ask an admin to link your identity to an account")
        if self.users.get(name) is not None:
            raise Forbidden(f"an account named {name!r} exists already on this server, and it is not linked to "
                            f"your identity: an admin can link it (POST /admin/users/{name}/oidc with "
                            f"subject {subject!r})")
        if not s.OIDC_CREATE_USERS:
            raise Forbidden(f"you have no account on this server: ask an admin to create one and link it to "
                            f"your identity (subject {subject!r})")
        try:
            check_user_name(name)
        except BadRequest:
            raise Forbidden(f"{name!r} (the {s.OIDC_USERNAME_CLAIM!r} claim) cannot be a user name here: "
                            "ask an admin to create an account and link it to your identity") from None
        _token, token_id, token_hash = new_token(self.token_key)  # nobody sees it: the profile page replaces it
        user = User(name=name, jobdefs=set(s.REGISTRATION_JOBDEFS), token_id=token_id, token_hash=token_hash,
                    created=utcnow())
        try:
            self.users.add(user)
        except UserExists:  # made meanwhile: by a sign-in of this same identity, or someone else
            return self._linked_meanwhile(issuer, subject, name)
        try:
            self.identities.link(issuer, subject, user.stored_uid)
        except IdentityTaken:  # two first sign-ins at once: the other one linked a user of that name first
            self.users.delete(name)
            return self._linked_meanwhile(issuer, subject, name)
        log.info("single sign-on: user %r created for %s %s", name, issuer, subject)
        return user

    def _linked_meanwhile(self, issuer: str, subject: str, name: str) -> User:
        uid = self.identities.uid_of(issuer, subject)
        user = self.users.by_uid(uid) if uid is not None else None
        if user is None:
            raise Forbidden(f"an account named {name!r} exists already on this server: an admin can link it")
        return user

    def _apply_groups(self, user: User, claimed: list[str]) -> User:
        """Roles, definitions and groups from the groups claim; the user as stored after."""
        s = self.settings
        groups = set(claimed)
        usable = usable_groups(claimed)
        for name in sorted(set(claimed) - usable)[:20]:
            log.info("single sign-on: group %r is not a valid OPUS group name, or one too many: not recorded", name)
        wanted: dict[str, Any] = {"groups": usable}
        if s.OIDC_ADMIN_GROUPS:
            wanted["is_admin"] = bool(groups & set(s.OIDC_ADMIN_GROUPS))
        if s.OIDC_EDITOR_GROUPS:
            wanted["is_editor"] = bool(groups & set(s.OIDC_EDITOR_GROUPS))
        if s.OIDC_JOBDEF_GROUPS is not None:
            wanted["jobdefs"] = {n for g, names in s.OIDC_JOBDEF_GROUPS.items() if g in groups for n in names}
        changes = {k: v for k, v in wanted.items() if getattr(user, k) != v}
        if not changes:
            return user
        self.users.update(user.name, **changes)
        refreshed = self.users.get(user.name)
        if refreshed is None:
            raise Forbidden("your account on this server was deleted: sign in again")
        return refreshed

    # ---- admins ------------------------------------------------------------------------------------
    def _user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise NotFound(f"no user {name!r}")
        return user

    def link(self, name: str, subject: object, issuer: object = None) -> OidcIdentity:
        """Link the identity (issuer, subject) to the user ``name`` (issuer: OIDC_ISSUER by default)."""
        user = self._user(name)
        issuer = issuer if issuer not in (None, "") else self.settings.OIDC_ISSUER
        if not isinstance(issuer, str) or not issuer or len(issuer) > 255:
            raise BadRequest("issuer: the identity provider's issuer URL (OIDC_ISSUER by default, which is not set)")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT:
            raise BadRequest(f"subject: the identity's 'sub' claim, 1 to {MAX_SUBJECT} characters")
        try:
            self.identities.link(issuer, subject, user.stored_uid)
        except IdentityTaken:
            raise Conflict(f"the identity {subject!r} of {issuer} is linked to a user already: unlink it first") \
                from None
        return next(i for i in self.identities.of_user(user.stored_uid) if (i.issuer, i.subject) == (issuer, subject))

    def linked(self, name: str) -> list[OidcIdentity]:
        return self.identities.of_user(self._user(name).stored_uid)

    def unlink(self, name: str, subject: object, issuer: object = None) -> None:
        user = self._user(name)
        issuer = issuer if issuer not in (None, "") else self.settings.OIDC_ISSUER
        if not isinstance(subject, str) or not isinstance(issuer, str) \
                or not self.identities.unlink(issuer, subject, user.stored_uid):
            raise NotFound(f"no identity {subject!r} of {issuer!r} is linked to {name!r}")
