"""Typed settings, loaded once from a Python settings file.

The file named by ``OPUS_SETTINGS`` (or passed on the command line) is executed as plain Python;
every UPPER_CASE name it defines must be one of the fields below (a typo is an error, not a silent
default).  ``settings.example.py`` at the top of the repository documents each field.
Nothing else in OPUS reads the environment for configuration: the ``Settings`` object is passed
to ``create_app`` and to the command-line tools.
"""

from __future__ import annotations

import os
import runpy
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from opus.errors import ConfigurationError
# Re-exported: the server serves the logo with these content types.
from opus.settings_checks import SITE_LOGO_TYPES as SITE_LOGO_TYPES
from opus.settings_checks import validated
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """Every setting of an OPUS server, with its default."""

    # Where OPUS keeps its state: the SQLite database (by default), job directories, secrets.
    DATA_DIR: str = str(REPO_ROOT / "var")
    # The OS user the server runs as (gunicorn, mod_wsgi's daemon, `opus serve`): `opus init` makes
    # what it creates in DATA_DIR this user's.  None: the user running `opus init`, which then refuses
    # to run as root (give `opus init --user NAME`, or "root" if the server runs as root).
    SERVICE_USER: str | None = None
    # /availability says the service is not available when DATA_DIR's file system has less free
    # space than this (bytes), or no free inode: jobs, uploads and results would fail.  0: not checked.
    DATA_DIR_MIN_FREE: int = 512 * 1024 * 1024
    # SQLAlchemy database URL; None means SQLite at DATA_DIR/opus.sqlite.
    DATABASE_URL: str | None = None
    # Directory holding one job definition per file (<name>.json).
    JDL_DIR: str = str(REPO_ROOT / "jdl")
    # Public base URL of the service (scheme://host[:port][/prefix]), used in every Location and link.
    # None: the request's Host when ALLOWED_HOSTS allows it, else the address the server listens on
    # (opus.server.hosts); never a Host header that is not allowed.
    BASE_URL: str | None = None
    # Base URL the job wrapper calls back (POST <CALLBACK_URL>/handler/job_event) with the job's
    # token; it must be reachable from where jobs run.  None: BASE_URL, else the address the server
    # listens on (`opus serve`, gunicorn's bind); never a URL taken from a request (opus.listen).
    # Under mod_wsgi with neither set, no job can start.
    CALLBACK_URL: str | None = None
    # With BASE_URL unset: Host header values used in absolute URLs besides the always allowed ones
    # (the listening address, and localhost/127.0.0.1/[::1] with the listening port; bound to
    # 0.0.0.0/::, also this machine's names and addresses).  Entries: "host" (any port),
    # "host:port", ".example.org" (the domain and its subdomains), "*" (any well-formed Host).
    # Another Host gets the listening address's URL (400 when that is unknown, as under mod_wsgi).
    ALLOWED_HOSTS: tuple[str, ...] = ()
    # Base URL of a second origin that serves the same OPUS for job files (results, uploads, /store),
    # e.g. "https://results.example.org/opus": the links to files in job documents point there, so a
    # file a browser renders runs with no access to the main origin's session (docs/deployment.md).
    # None: files are linked on BASE_URL's origin (they are served with nosniff, a sandboxing CSP and
    # as attachments either way).
    RESULTS_BASE_URL: str | None = None
    # Execution manager: "local" (run on this host) or "slurm" (sbatch to a SLURM cluster).
    MANAGER: str = "local"
    # Local manager: how many jobs may execute at once (the rest wait in QUEUED). 0: number of CPUs.
    MAX_RUNNING_JOBS: int = 0
    # Local manager (pre-forked launcher, issue 18): job wrappers are forked by a launcher process
    # that has imported the wrapper once, not started as a new interpreter each (about 30 ms less
    # per job start).  False: a new interpreter per job, as before.
    LOCAL_PREFORK: bool = True
    # SQLite (issue 18): job creations are written by a small writer process that each server process
    # keeps (opus/storage/writerproc.py), not by a request thread: the host's write lock is then held
    # only for SQLite's own work.  False: written by the request threads, as before.
    SQLITE_WRITER_PROCESS: bool = True
    # executionDuration: used when a definition gives none; cap for any job (0: no cap).
    DEFAULT_EXECUTION_DURATION: int = 3600
    MAX_EXECUTION_DURATION: int = 86400
    # Destruction: interval after creation (seconds) and the longest a client may ask for.
    DESTRUCTION_INTERVAL: int = 30 * 86400
    MAX_DESTRUCTION_INTERVAL: int = 365 * 86400
    # What happens at destruction time: "delete" (job forgotten, 404) or "archive" (ARCHIVED phase,
    # results deleted, metadata kept).
    DESTRUCTION_POLICY: str = "delete"
    # Seconds between runs of the in-server maintenance task (destruction sweep); 0 disables it
    # (then run `opus maintenance` from cron).
    MAINTENANCE_INTERVAL: int = 60
    # Longest a blocking WAIT may hold a request (seconds); WAIT=-1 means this.
    MAX_WAIT: int = 60
    # Most WAITs one server process holds at once; beyond, a WAIT is answered at once (UWS allows
    # it).  None: the process's request threads less a tenth (at least 2), when the server tells
    # them (gunicorn with gunicorn.conf.py, mod_wsgi), else no limit.  opus.service.waitslots.
    MAX_HELD_WAITS: int | None = None
    # Seconds a killed job's processes get between SIGTERM and SIGKILL.
    KILL_GRACE: float = 2.0
    # Job wrapper callbacks: how long (seconds) a wrapper keeps retrying when the server is away.
    CALLBACK_RETRY_SECONDS: int = 900
    # Accept job parameters POSTed to the job URL itself (UWS good practice; DALI forbids it).
    PARAMETERS_AT_JOB_URL: bool = True
    # Limits on request bodies and uploads (bytes).
    MAX_BODY_SIZE: int = 1024 * 1024
    MAX_UPLOAD_SIZE: int = 1024 * 1024 * 1024
    # Most parameters one request may carry, and the longest parameter value in bytes (a
    # value reaches the job as an environment variable, which Linux caps at 128 KiB; send larger
    # content as a file upload).
    MAX_PARAMETERS: int = 200
    MAX_PARAMETER_VALUE: int = 100_000
    # Most fields (urlencoded) or parts (multipart) in one form, counted while parsing so that a
    # body of 100,000 tiny parts costs nothing (400 beyond); 0: MAX_PARAMETERS + 16.
    MAX_FORM_PARTS: int = 0
    # Largest job wrapper report (POST /handler/job_event, public: checked before its token).
    # A report lists the job's results, about 200 bytes each (up to 700 with 255-character names):
    # 256 KiB holds some 1,300.  A larger report is refused (413) and the server reads the job's
    # report.json instead when the wrapper ends (local), or at the epilog's hint or reconciliation (SLURM).
    MAX_REPORT_SIZE: int = 256 * 1024
    # A parameter the job definition does not declare: refused with 400 (False), or accepted and
    # ignored (True: for generic clients that send extra names such as RESPONSEFORMAT).
    IGNORE_UNKNOWN_PARAMETERS: bool = False
    # Hosts whose http(s) URLs clients may give as job inputs ("data.example.org", ".example.org"
    # for a domain, "*" for any host with public addresses); empty: no client URLs.  Hosts of the
    # definitions' own URL templates are always allowed.  The job wrapper fetches them.
    INPUT_URL_HOSTS: tuple[str, ...] = ()
    # Fetching one URL input: at most this many seconds and bytes.
    INPUT_URL_TIMEOUT: int = 300
    INPUT_URL_MAX_SIZE: int = 1024 * 1024 * 1024
    # Secret for the per-job callback tokens (HMAC); None: generated once into DATA_DIR/secret.key.
    SECRET_KEY: str | None = None
    # Log level of the server (DEBUG, INFO, WARNING, ERROR).
    LOG_LEVEL: str = "INFO"
    # GET /metrics (Prometheus) without credentials (True: restrict it at the front end), or for
    # admins only (False).
    METRICS_PUBLIC: bool = False

    # ---- the job sandbox (SECURITY.md, "Jobs are untrusted code") -----------------------------------
    # How job scripts are isolated: "bwrap" (Linux namespaces through bubblewrap: the script sees its
    # work directory, its inputs and the system read-only, nothing of the server) or "none" (the
    # script runs with the wrapper's rights and sees what it can read: only for a trusted, single-user
    # server).  With "bwrap" and no working bubblewrap, jobs are not started and /availability says why.
    JOB_SANDBOX: str = "bwrap"
    # The unprivileged OS user that runs job scripts when the process starting them is root (local
    # manager as root, SLURM jobs of root).  `opus init` creates it; `opus check` checks it.
    JOB_USER: str = "opus-job"
    # The bubblewrap executable (a name looked up in /usr/local/bin:/usr/bin:/bin, or a path).
    JOB_SANDBOX_BWRAP: str = "bwrap"
    # Extra directories job scripts may read (software, catalogues), mounted read-only at the same path.
    JOB_SANDBOX_READ_ONLY: tuple[str, ...] = ()
    # -- job scripts written for the original OPUS (issue 16): the shell of a definition that names none:
    # "plain" (a non-login bash, PATH /usr/local/bin:/usr/bin:/bin) or "login" (bash -l: /etc/profile and
    # /etc/profile.d, as the original ran scripts).  docs/job-definitions.md, "What the script sees".
    JOB_SHELL: str = "plain"

    # ---- identity (SECURITY.md) -------------------------------------------------------------------
    # Requests without credentials act as the anonymous user (True), or get 401 (False).
    ALLOW_ANONYMOUS: bool = True
    # Accepted credentials: HTTP Basic name:token; Authorization: Bearer <token>.
    AUTH_BASIC: bool = True
    AUTH_BEARER: bool = True
    # Trust REMOTE_USER set by the front end (Apache/mod_wsgi authentication, a proxy that sets it).
    # Only when nothing else can reach OPUS: anyone who can set it can be anyone.
    AUTH_REMOTE_USER: bool = False
    # Job definitions a REMOTE_USER without a stored user may use ("*": all).
    REMOTE_USER_JOBDEFS: tuple[str, ...] = ("*",)
    # Job definitions the anonymous user may use ("*": all; (): none).
    ANONYMOUS_JOBDEFS: tuple[str, ...] = ("*",)
    # Unfinished jobs a user may have at once unless the user has a limit of its own (0: no limit);
    # it applies to the anonymous user as a whole.
    DEFAULT_MAX_ACTIVE_JOBS: int = 0
    # Failed sign-in throttling (Basic, Bearer, the web sign-in form): after this many failures within
    # SIGNIN_FAILURE_WINDOW seconds, a user name (a Bearer token's id) or a client address (REMOTE_ADDR,
    # IPv6 per /64; never X-Forwarded-For) gets 429 with Retry-After, without any check, until the
    # oldest failure leaves the window.  0: no limit of that kind.  Counted in memory by each process.
    SIGNIN_FAILURE_WINDOW: int = 300
    SIGNIN_MAX_FAILURES_PER_NAME: int = 10
    SIGNIN_MAX_FAILURES_PER_ADDRESS: int = 100
    # ---- accounts: passwords, registration, service tokens (issue 17; SECURITY.md, "Accounts") ----
    # Self-registration on /web/register: "off", "open" (the account works at once) or "approved"
    # (it waits, disabled, until an admin enables it).
    REGISTRATION: str = "off"
    # Job definitions a self-registered user may use ("*": all).
    REGISTRATION_JOBDEFS: tuple[str, ...] = ("*",)
    # Registrations accepted from one client address (REMOTE_ADDR) per hour.
    REGISTRATION_MAX_PER_ADDRESS: int = 5
    # Shortest password accepted; argon2id cost (iterations, memory in KiB) of new password hashes.
    PASSWORD_MIN_LENGTH: int = 10
    PASSWORD_HASH_TIME_COST: int = 3
    PASSWORD_HASH_MEMORY_COST: int = 65536
    # Seconds an admin-issued password reset link stays valid.
    PASSWORD_RESET_LIFETIME: int = 24 * 3600
    # Longest life of a service token, in days.
    SERVICE_TOKEN_MAX_DAYS: int = 365

    # ---- web client (README, "The web client") -----------------------------------------------------
    # Origins ("https://other.example.org[:port]") whose pages may call this API from the browser
    # with the visitor's session (CORS with credentials); "*": any origin, with tokens only.
    CORS_ORIGINS: tuple[str, ...] = ()
    # Seconds a web session (signing in with a token) lasts; a new token for the user ends it early.
    SESSION_LIFETIME: int = 8 * 3600
    # Where the web client's npm libraries are (default: the installed package's opus/web/lib, else
    # the checkout's node_modules/, where `npm ci` puts them).
    WEB_LIBRARIES_DIR: str = str(REPO_ROOT / "node_modules")
    # ---- the site's identity on the web pages (issue 15, point 9; README, "The web client") --------
    # The site's name, in the navigation bar, page titles and the home page.
    SITE_TITLE: str = "OPUS"
    # A logo beside the title: "" (none), an absolute path to an image file (.png, .jpg, .jpeg, .gif,
    # .webp, .svg, .ico) that OPUS serves at /web/static/site-logo, or an http(s) URL the browser loads it from.
    SITE_LOGO: str = ""
    # Text of the home page (/web/): plain paragraphs separated by blank lines (no Markdown, no HTML:
    # shown as written). "": a standard introduction.
    SITE_HOME_TEXT: str = ""

    # ---- SLURM manager ---------------------------------------------------------------------
    # Directory holding sbatch, squeue and scancel ("" = found on PATH).
    SLURM_BIN_DIR: str = ""
    # Partition used when neither the definition nor the job names one (None: the cluster's default).
    SLURM_PARTITION: str | None = None
    # Partitions jobs may ask for with slurm_partition (empty: any valid name).
    SLURM_PARTITIONS: tuple[str, ...] = ()
    # Account charged when neither the definition nor the job names one.
    SLURM_ACCOUNT: str | None = None
    # Seconds added to executionDuration before rounding up to SLURM's whole minutes for --time
    # (the wrapper stops the job to the second; --time is the backstop).
    SLURM_TIME_MARGIN: int = 60
    # Minutes between reconciliations (one squeue for all jobs; also done at start-up).
    SLURM_RECONCILE_MINUTES: float = 5.0
    # Unused since issue 14 (kept so old settings files load): a transient sbatch failure is an
    # outage; jobs stay QUEUED and are retried with back-off, without a cap.
    SLURM_SUBMIT_RETRIES: int = 3
    # jobcomp/filetxt log of the cluster (JobCompLoc), read at reconciliation for jobs that ended
    # without a report; None: not used.
    SLURM_JOBCOMP_LOG: str | None = None
    # Python interpreter on the compute nodes that runs the job wrapper (None: this one; with
    # SLURM_REMOTE_DIR: "python3").
    SLURM_PYTHON: str | None = None
    # Run SLURM commands on a login node through ssh (None: on this host).
    SLURM_SSH_HOST: str | None = None
    SLURM_SSH_USER: str | None = None
    SLURM_SSH_PORT: int = 22
    # Private key for ssh (None: ssh's defaults) and known_hosts file (None: ssh's defaults).
    SLURM_SSH_KEY: str | None = None
    SLURM_SSH_KNOWN_HOSTS: str | None = None
    # With SLURM_SSH_HOST: the cluster-side directory for job directories when the cluster does
    # not share DATA_DIR (files are copied both ways over ssh); None: DATA_DIR is shared.
    SLURM_REMOTE_DIR: str | None = None

    # ---- notifications and sharing (issue 17; README, "Notifications and sharing") -----------------
    # SMTP server for e-mail (job ends asked with NOTIFY=email, proposals to admins, digests);
    # "" sends no e-mail (NOTIFY=email is then refused).  SMTP_SECURITY: "none", "starttls" or "ssl".
    SMTP_HOST: str = ""
    SMTP_PORT: int = 25
    SMTP_SECURITY: str = "none"
    SMTP_USER: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_TIMEOUT: float = 30.0
    MAIL_FROM: str = "opus@localhost"
    # Addresses told when a job definition is proposed, besides admins who gave an e-mail address.
    MAIL_ADMINS: tuple[str, ...] = ()
    # Hour of the day (UTC, 0-23) the daily digest (NOTIFY=digest) is sent; None: no digest option.
    MAIL_DIGEST_HOUR: int | None = None
    # WEBHOOK=<url> on jobs (a POST at each phase change), to hosts of INPUT_URL_HOSTS only.
    WEBHOOKS: bool = False
    # Longest life of a share link, in seconds (what a link asks for is capped to it); default 30 days.
    SHARE_MAX_LIFETIME: int = 30 * 86400

    # ---- single sign-on: OpenID Connect (issue 17; docs/single-sign-on.md; SECURITY.md, "Single sign-on") --
    # The identity provider's issuer URL (its metadata is read from <issuer>/.well-known/openid-configuration);
    # "" (the default): no single sign-on.  The client registered at the provider: its id and secret; the
    # redirect URI to register is <BASE_URL>/web/signin/oidc/callback.
    OIDC_ISSUER: str = ""
    OIDC_CLIENT_ID: str = ""
    OIDC_CLIENT_SECRET: str = ""
    # The sign-in page's button: "Sign in with <OIDC_PROVIDER_NAME>".
    OIDC_PROVIDER_NAME: str = "your organisation"
    # Scopes asked for ("openid" is always sent).
    OIDC_SCOPES: tuple[str, ...] = ("openid", "profile", "email")
    # The ID token's claims that give the OPUS user name (on first sign-in) and the user's groups.
    OIDC_USERNAME_CLAIM: str = "preferred_username"
    OIDC_GROUPS_CLAIM: str = "groups"
    # Create a user on its first sign-in (with REGISTRATION_JOBDEFS); False: an admin creates and links it.
    OIDC_CREATE_USERS: bool = False
    # Groups (of the groups claim) that make a user admin, or editor, re-applied at every sign-in;
    # () leaves that role as an admin set it.
    OIDC_ADMIN_GROUPS: tuple[str, ...] = ()
    OIDC_EDITOR_GROUPS: tuple[str, ...] = ()
    # {group: [job definition names or "*"]}: the definitions a user may use are those of its groups,
    # set at every sign-in; None leaves them as they are.
    OIDC_JOBDEF_GROUPS: dict[str, tuple[str, ...]] | None = field(default=None, compare=False)
    # Seconds OPUS waits for the provider (metadata, keys, the code exchange) before a 502.
    OIDC_TIMEOUT: float = 10.0

    # Set by OPUS itself, never by a settings file: "settings_file" (where the settings came from),
    # "listen_binds" (what `opus serve` bound).  Read through the properties below.
    extra: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    # ---- derived values -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL in use (SQLite in DATA_DIR by default)."""
        return self.DATABASE_URL or f"sqlite:///{Path(self.DATA_DIR) / 'opus.sqlite'}"

    @property
    def jobs_dir(self) -> Path:
        """Directory holding one sub-directory per job."""
        return Path(self.DATA_DIR) / "jobs"

    @property
    def run_dir(self) -> Path:
        """Directory for sockets and locks shared by the processes of one server."""
        return Path(self.DATA_DIR) / "run"

    @property
    def max_running_jobs(self) -> int:
        return self.MAX_RUNNING_JOBS or (os.cpu_count() or 1)

    @property
    def max_form_parts(self) -> int:
        """The most fields or parts parsed from one form (MAX_FORM_PARTS, 0: MAX_PARAMETERS + 16)."""
        return self.MAX_FORM_PARTS or self.MAX_PARAMETERS + 16

    @property
    def settings_file(self) -> str | None:
        """The settings file these settings were loaded from (the job sandbox hides it), if any."""
        value = self.extra.get("settings_file")
        return value if isinstance(value, str) else None

    @property
    def listen_binds(self) -> tuple[str, ...] | None:
        """The bind list ``opus serve`` recorded (opus.listen.with_listen_address), if any."""
        value = self.extra.get("listen_binds")
        return value if isinstance(value, tuple) else None

    def with_overrides(self, **values: Any) -> Settings:
        """A copy with some fields replaced (validated like a settings file)."""
        return validated(replace(self, **values))


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "extra"}


def _run_settings_file(p: Path) -> dict[str, Any]:
    """The names a settings file defines.  A file that Python cannot run (a syntax error, a name not
    defined, an import that fails) is a ConfigurationError naming the file and the line, not a
    traceback through OPUS's start-up."""
    try:
        return runpy.run_path(str(p))
    except SyntaxError as exc:
        where = f", line {exc.lineno}" if exc.lineno else ""
        code = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        raise ConfigurationError(f"settings file {str(p)!r}{where}: {exc.msg}{code}") from None
    except OSError as exc:
        raise ConfigurationError(f"settings file {str(p)!r} cannot be read: {exc.strerror or exc}") from None
    except Exception as exc:
        lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__)
                 if frame.filename == str(p) and frame.lineno]
        where = f", line {lines[-1]}" if lines else ""
        raise ConfigurationError(f"settings file {str(p)!r}{where}: {type(exc).__name__}: {exc}") from None


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load the settings file at ``path`` (default: ``$OPUS_SETTINGS``; none: all defaults)."""
    path = path if path is not None else os.environ.get("OPUS_SETTINGS")
    # Any: whatever a settings file assigned (a boundary); _validated checks what matters.
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigurationError(f"settings file {str(p)!r} does not exist")
        namespace = _run_settings_file(p)
        for name, value in namespace.items():
            if not name.isupper() or name.startswith("_"):
                continue
            if name not in _FIELDS:
                raise ConfigurationError(f"{p}: unknown setting {name!r}; see settings.example.py")
            values[name] = value
    values.update(overrides)
    for name in ("SLURM_PARTITIONS", "ANONYMOUS_JOBDEFS", "REMOTE_USER_JOBDEFS", "CORS_ORIGINS",
                 "JOB_SANDBOX_READ_ONLY", "ALLOWED_HOSTS", "REGISTRATION_JOBDEFS",
                 "MAIL_ADMINS", "OIDC_SCOPES", "OIDC_ADMIN_GROUPS", "OIDC_EDITOR_GROUPS"):
        if name in values:
            values[name] = tuple(values[name])
    for name, value in values.items():
        expected = _FIELDS[name].type
        if "int" in expected and "float" not in expected and isinstance(value, bool):
            raise ConfigurationError(f"{name} must be an integer")
    # Where the settings came from: the job sandbox hides that file from job scripts.
    extra: dict[str, object] = {"settings_file": str(Path(path).resolve())} if path else {}
    return validated(Settings(**values, extra=extra))
