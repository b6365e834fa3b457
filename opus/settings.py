"""Typed settings, loaded once from a Python settings file.

The file named by ``OPUS_SETTINGS`` (or passed on the command line) is executed as plain Python;
every UPPER_CASE name it defines must be one of the fields below (a typo is an error, not a silent
default).  ``settings.example.py`` at the top of the repository documents each field.
Nothing else in OPUS reads the environment for configuration: the ``Settings`` object is passed
to ``create_app`` and to the command-line tools.
"""

from __future__ import annotations

import os
import re
import runpy
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from opus.errors import ConfigurationError
REPO_ROOT = Path(__file__).resolve().parent.parent
#: RESULTS_BASE_URL: scheme://host[:port][/path], nothing a link could not be built on.
_RESULTS_BASE = re.compile(r"^https?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?(?:/[^\s?#]*)?\Z")
_ORIGIN = re.compile(r"^\*\Z|^https?://(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?\Z")
#: ALLOWED_HOSTS entries: "*", "host", "host:port", ".domain", "[v6]", "[v6]:port".
_ALLOWED_HOST = re.compile(r"^\*\Z|^(?:\.?[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])"
                           r"(?::\d{1,5})?\Z")


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

    # ---- web client (README, "The web client") -----------------------------------------------------
    # Origins ("https://other.example.org[:port]") whose pages may call this API from the browser
    # with the visitor's session (CORS with credentials); "*": any origin, with tokens only.
    CORS_ORIGINS: tuple[str, ...] = ()
    # Seconds a web session (signing in with a token) lasts; a new token for the user ends it early.
    SESSION_LIFETIME: int = 8 * 3600
    # Where the web client's npm libraries are (default: the installed package's opus/web/lib, else
    # the checkout's node_modules/, where `npm ci` puts them).
    WEB_LIBRARIES_DIR: str = str(REPO_ROOT / "node_modules")

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
        return _validated(replace(self, **values))


_FIELDS = {f.name: f for f in fields(Settings) if f.name != "extra"}


def _validated(s: Settings) -> Settings:
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
    for origin in s.CORS_ORIGINS:
        if not isinstance(origin, str) or not _ORIGIN.match(origin.rstrip("/")):
            raise ConfigurationError(f"CORS_ORIGINS: {origin!r} is not '*' or scheme://host[:port]")
    if s.SESSION_LIFETIME <= 0:
        raise ConfigurationError("SESSION_LIFETIME must be > 0")
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
    for entry in s.ALLOWED_HOSTS:
        if not isinstance(entry, str) or not _ALLOWED_HOST.match(entry):
            raise ConfigurationError(f"ALLOWED_HOSTS: {entry!r} is not '*', 'host', 'host:port' or '.domain'")
    for name in ("BASE_URL", "CALLBACK_URL"):
        value = getattr(s, name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigurationError(f"{name} must be an http(s) URL, not {value!r}")
    if s.RESULTS_BASE_URL is not None and not _RESULTS_BASE.match(s.RESULTS_BASE_URL):
        raise ConfigurationError("RESULTS_BASE_URL must be an http(s) URL with a host and no query, like "
                                 f"'https://results.example.org/opus', not {s.RESULTS_BASE_URL!r}")
    return s


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Load the settings file at ``path`` (default: ``$OPUS_SETTINGS``; none: all defaults)."""
    path = path if path is not None else os.environ.get("OPUS_SETTINGS")
    # Any: whatever a settings file assigned (a boundary); _validated checks what matters.
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigurationError(f"settings file {str(p)!r} does not exist")
        namespace = runpy.run_path(str(p))
        for name, value in namespace.items():
            if not name.isupper() or name.startswith("_"):
                continue
            if name not in _FIELDS:
                raise ConfigurationError(f"{p}: unknown setting {name!r}; see settings.example.py")
            values[name] = value
    values.update(overrides)
    for name in ("SLURM_PARTITIONS", "ANONYMOUS_JOBDEFS", "REMOTE_USER_JOBDEFS", "CORS_ORIGINS",
                 "JOB_SANDBOX_READ_ONLY", "ALLOWED_HOSTS"):
        if name in values:
            values[name] = tuple(values[name])
    for name, value in values.items():
        expected = _FIELDS[name].type
        if "int" in expected and "float" not in expected and isinstance(value, bool):
            raise ConfigurationError(f"{name} must be an integer")
    # Where the settings came from: the job sandbox hides that file from job scripts.
    extra: dict[str, object] = {"settings_file": str(Path(path).resolve())} if path else {}
    return _validated(Settings(**values, extra=extra))
