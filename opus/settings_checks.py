"""Checks of a settings file's values: a mistake is a ConfigurationError at start-up, naming the setting."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from opus.errors import ConfigurationError

if TYPE_CHECKING:
    from opus.settings import Settings

#: RESULTS_BASE_URL: scheme://host[:port][/path], nothing a link could not be built on.
_RESULTS_BASE = re.compile(r"^https?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/[^\s?#]*)?\Z")
#: SITE_LOGO: the image files OPUS serves as the site's logo, with their content types; or a URL.
SITE_LOGO_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
                   ".webp": "image/webp", ".svg": "image/svg+xml", ".ico": "image/vnd.microsoft.icon"}
_SITE_LOGO_FILE = re.compile(r"^/.*(?:" + "|".join(map(re.escape, SITE_LOGO_TYPES)) + r")\Z", re.IGNORECASE | re.DOTALL)
_SITE_LOGO_URL = re.compile(r"^https?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/[^\s\"'<>\\]*)?\Z")
_ORIGIN = re.compile(r"^\*\Z|^https?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\Z")
#: ALLOWED_HOSTS entries: "*", "host", "host:port", ".domain", "[v6]", "[v6]:port".
_ALLOWED_HOST = re.compile(r"^\*\Z|^(?:\.?[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                           r"(?::\d{1,5})?\Z")


def validated(s: Settings) -> Settings:
    """``s``, once every check passed."""
    _check_core(s)
    _check_access(s)
    _check_urls_and_services(s)
    _check_single_sign_on(s)
    return s


def _check_core(s: Settings) -> None:
    """Managers, limits, durations, CORS and sessions."""
    if s.DESTRUCTION_POLICY not in ("delete", "archive"):
        raise ConfigurationError(f"DESTRUCTION_POLICY must be 'delete' or 'archive', not {s.DESTRUCTION_POLICY!r}")
    if s.MANAGER not in ("local", "slurm"):
        raise ConfigurationError(f"MANAGER: unknown manager {s.MANAGER!r}; known: 'local', 'slurm'")
    if not 0 < s.MAX_PARAMETER_VALUE <= 130_000:
        raise ConfigurationError("MAX_PARAMETER_VALUE must be 1 to 130000 bytes (Linux caps an environment "
                                 "variable at 128 KiB)")
    if s.SLURM_REMOTE_DIR is not None and not s.SLURM_SSH_HOST:
        raise ConfigurationError("SLURM_REMOTE_DIR needs SLURM_SSH_HOST (files are copied over ssh)")
    if s.SLURM_RECONCILE_MINUTES <= 0:
        raise ConfigurationError("SLURM_RECONCILE_MINUTES must be > 0")
    for name in ("MAX_WAIT", "DESTRUCTION_INTERVAL", "MAX_EXECUTION_DURATION", "MAINTENANCE_INTERVAL",
                 "MAX_RUNNING_JOBS", "DEFAULT_EXECUTION_DURATION", "DATA_DIR_MIN_FREE"):
        if getattr(s, name) < 0:
            raise ConfigurationError(f"{name} must be >= 0")
    if s.MAX_HELD_WAITS is not None and (not isinstance(s.MAX_HELD_WAITS, int) or isinstance(s.MAX_HELD_WAITS, bool)
                                         or s.MAX_HELD_WAITS < 0):
        raise ConfigurationError("MAX_HELD_WAITS must be None (from the server's threads) or an integer >= 0")
    for origin in s.CORS_ORIGINS:
        if not isinstance(origin, str) or not _ORIGIN.match(origin.rstrip("/")):
            raise ConfigurationError(f"CORS_ORIGINS: {origin!r} is not '*' or scheme://host[:port]")
    if s.SESSION_LIFETIME <= 0:
        raise ConfigurationError("SESSION_LIFETIME must be > 0")
    if s.JOB_SHELL not in ("plain", "login"):
        raise ConfigurationError(f"JOB_SHELL must be 'plain' or 'login', not {s.JOB_SHELL!r}")


def _check_access(s: Settings) -> None:
    """Accounts, sign-in throttling, request parts and the job sandbox."""
    if s.REGISTRATION not in ("off", "open", "approved"):  # accounts
        raise ConfigurationError(f"REGISTRATION must be 'off', 'open' or 'approved', not {s.REGISTRATION!r}")
    if min(s.PASSWORD_MIN_LENGTH, s.PASSWORD_HASH_TIME_COST, s.PASSWORD_RESET_LIFETIME,
           s.SERVICE_TOKEN_MAX_DAYS, s.REGISTRATION_MAX_PER_ADDRESS + 1) < 1 or s.PASSWORD_HASH_MEMORY_COST < 8:
        raise ConfigurationError("PASSWORD_*, SERVICE_TOKEN_MAX_DAYS must be >= 1 (PASSWORD_HASH_MEMORY_COST >= 8), "
                                 "REGISTRATION_MAX_PER_ADDRESS >= 0")
    if s.SIGNIN_FAILURE_WINDOW <= 0 or s.SIGNIN_MAX_FAILURES_PER_NAME < 0 or s.SIGNIN_MAX_FAILURES_PER_ADDRESS < 0:
        raise ConfigurationError("SIGNIN_FAILURE_WINDOW must be > 0, SIGNIN_MAX_FAILURES_PER_NAME and "
                                 "SIGNIN_MAX_FAILURES_PER_ADDRESS >= 0 (0: no limit)")
    if s.MAX_FORM_PARTS and s.MAX_FORM_PARTS < s.MAX_PARAMETERS:
        raise ConfigurationError("MAX_FORM_PARTS must be 0 (MAX_PARAMETERS + 16) or at least MAX_PARAMETERS")
    if s.MAX_FORM_PARTS < 0 or s.MAX_REPORT_SIZE <= 0:
        raise ConfigurationError("MAX_FORM_PARTS must be >= 0 and MAX_REPORT_SIZE > 0")
    if s.JOB_SANDBOX not in ("bwrap", "none"):
        raise ConfigurationError(f"JOB_SANDBOX must be 'bwrap' or 'none', not {s.JOB_SANDBOX!r}")
    for path in s.JOB_SANDBOX_READ_ONLY:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"JOB_SANDBOX_READ_ONLY: {path!r} is not an absolute path")


def _check_urls_and_services(s: Settings) -> None:
    """Host names and URLs, the site's logo, e-mail and share links."""
    for entry in s.ALLOWED_HOSTS:
        if not isinstance(entry, str) or not _ALLOWED_HOST.match(entry):
            raise ConfigurationError(f"ALLOWED_HOSTS: {entry!r} is not '*', 'host', 'host:port' or '.domain'")
    for name in ("BASE_URL", "CALLBACK_URL"):
        value = getattr(s, name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigurationError(f"{name} must be an http(s) URL, not {value!r}")
    if s.SITE_LOGO and not (_SITE_LOGO_URL.match(s.SITE_LOGO) or _SITE_LOGO_FILE.match(s.SITE_LOGO)):
        raise ConfigurationError(f"SITE_LOGO must be '', an http(s) URL or an absolute path to a "
                                 f"{'/'.join(SITE_LOGO_TYPES)} file, not {s.SITE_LOGO!r}")
    if s.RESULTS_BASE_URL is not None and not _RESULTS_BASE.match(s.RESULTS_BASE_URL):
        raise ConfigurationError("RESULTS_BASE_URL must be an http(s) URL with a host and no query, like "
                                 f"'https://results.example.org/opus', not {s.RESULTS_BASE_URL!r}")
    if s.SMTP_SECURITY not in ("none", "starttls", "ssl"):  # notifications
        raise ConfigurationError(f"SMTP_SECURITY must be 'none', 'starttls' or 'ssl', not {s.SMTP_SECURITY!r}")
    if s.MAIL_DIGEST_HOUR is not None and not 0 <= s.MAIL_DIGEST_HOUR <= 23:
        raise ConfigurationError("MAIL_DIGEST_HOUR must be None or an hour, 0 to 23 (UTC)")
    if s.SHARE_MAX_LIFETIME <= 0:
        raise ConfigurationError("SHARE_MAX_LIFETIME must be > 0 seconds")


#: OIDC_ISSUER: an https URL (http only on a loopback address, for tests), no query or fragment.
_ISSUER = re.compile(r"^(?:https://[^\s/?#]+|http://(?:127\.0\.0\.1|localhost|\[::1\])(?::\d{1,5})?)(?:/[^\s?#]*)?\Z")
_CLAIM = re.compile(r"^[A-Za-z0-9_.:/\-]{1,100}\Z")
_JOBDEF = re.compile(r"^(?:\*|[A-Za-z][A-Za-z0-9_.-]{0,63})\Z")


def _check_single_sign_on(s: Settings) -> None:
    """OpenID Connect (docs/single-sign-on.md): the issuer, the client, the claims and the group maps."""
    if not s.OIDC_ISSUER:
        return
    if not _ISSUER.match(s.OIDC_ISSUER):
        raise ConfigurationError(f"OIDC_ISSUER must be the provider's https URL (no query), not {s.OIDC_ISSUER!r}")
    if not s.OIDC_CLIENT_ID or not isinstance(s.OIDC_CLIENT_ID, str):
        raise ConfigurationError("OIDC_ISSUER is set but OIDC_CLIENT_ID is not: give the client id registered at "
                                 "the provider")
    if not isinstance(s.OIDC_CLIENT_SECRET, str):
        raise ConfigurationError("OIDC_CLIENT_SECRET must be a string")
    for name in ("OIDC_USERNAME_CLAIM", "OIDC_GROUPS_CLAIM"):
        if not isinstance(getattr(s, name), str) or not _CLAIM.match(getattr(s, name)):
            raise ConfigurationError(f"{name} must be a claim name, not {getattr(s, name)!r}")
    if not isinstance(s.OIDC_PROVIDER_NAME, str) or not 0 < len(s.OIDC_PROVIDER_NAME.strip()) <= 100:
        raise ConfigurationError("OIDC_PROVIDER_NAME must be a name of 1 to 100 characters")
    for name in ("OIDC_SCOPES", "OIDC_ADMIN_GROUPS", "OIDC_EDITOR_GROUPS"):
        for item in getattr(s, name):
            if not isinstance(item, str) or not item or any(c.isspace() for c in item):
                raise ConfigurationError(f"{name}: {item!r} is not a name (a list of names is expected)")
    jobdef_groups = s.OIDC_JOBDEF_GROUPS
    if jobdef_groups is not None:
        if not isinstance(jobdef_groups, dict):
            raise ConfigurationError("OIDC_JOBDEF_GROUPS must be None or a dict {group: [job definition names]}")
        for group, names in jobdef_groups.items():
            if not isinstance(group, str) or not isinstance(names, (list, tuple)) \
                    or not all(isinstance(n, str) and _JOBDEF.match(n) for n in names):
                raise ConfigurationError(f"OIDC_JOBDEF_GROUPS: {group!r} must map to a list of job definition "
                                         "names (or \"*\")")
    if not 0 < s.OIDC_TIMEOUT <= 120:
        raise ConfigurationError("OIDC_TIMEOUT must be > 0 and at most 120 seconds")
