# OPUS settings file: copy it, edit it, and point OPUS_SETTINGS at the copy
#   (or pass `opus --settings FILE ...`).
#
# The file is plain Python executed once at start-up.  Every UPPER_CASE name must be one of the
# settings below (a misspelt name is an error, not a silently ignored line).  A setting left out
# keeps the default shown here, except DATA_DIR and JDL_DIR: their values here are the usual places
# on a server, their defaults `var/` and `jdl/` next to the `opus` package (set both when OPUS is
# installed with pip rather than run from a checkout).  Lines starting with an underscore or in
# lower case are yours (helpers, imports).

# ---- Where things are ------------------------------------------------------------------------------
# Directory for OPUS's state: the SQLite database (by default), one directory per job (uploads,
# work directory, results, stdout/stderr), notification sockets and locks, and the generated
# callback secret.  Default: the `var/` directory of the source tree.
DATA_DIR = "/var/lib/opus"

# The OS user the server runs as (gunicorn, mod_wsgi's daemon process, `opus serve`).  `opus init`,
# run as root (it creates the job user), makes DATA_DIR, its jobs/ directory, the SQLite database
# and the secret this user's, so that the server can write them.  None: the user running
# `opus init`; as root, `opus init` then refuses until you name one (here, or `opus init --user NAME`;
# "root" if the server really runs as root).
SERVICE_USER = None

# /availability answers "not available" when DATA_DIR's file system has less free space than this
# (bytes), or no free inode left: jobs, uploads and results would fail.  0: not checked.
DATA_DIR_MIN_FREE = 512 * 1024 * 1024

# SQLAlchemy database URL.  None: SQLite at DATA_DIR/opus.sqlite (the embedded default).
# Production: PostgreSQL through psycopg2, e.g.
#   DATABASE_URL = "postgresql+psycopg2://opus:secret@dbhost:5432/opus"
# Create or upgrade the schema with `opus init` after changing it.
DATABASE_URL = None

# Directory of job definitions, one <name>.json per definition (see docs/job-definitions.md).
# Default: the `jdl/` directory of the source tree.  Files are re-read when they change.
JDL_DIR = "/etc/opus/jdl"

# Public base URL of the service as clients reach it (scheme://host[:port][/prefix]).  Used in
# Location headers and in every link of the UWS documents.  Set it in production.  None: the
# request's Host header when ALLOWED_HOSTS (below) allows it, else the address the server listens
# on; under mod_wsgi, where that address is unknown, a request with another Host gets 400.
BASE_URL = None

# Base URL the job wrapper posts its reports to (<CALLBACK_URL>/handler/job_event), with the job's
# secret token.  It must be reachable from where jobs run (SLURM: from the compute nodes).  None:
# BASE_URL, else the address the server listens on (`opus serve --host/--port`, gunicorn's bind
# with gunicorn.conf.py; 0.0.0.0 and :: mean 127.0.0.1 and ::1).  It never comes from a request.
# Under mod_wsgi or on a unix socket with neither this nor BASE_URL set, jobs end in ERROR at once
# (and /availability and `opus check` say why).
CALLBACK_URL = None

# With BASE_URL unset: Host header values that may appear in Location headers and links, besides
# those always allowed: the listening address, localhost/127.0.0.1/[::1] with the listening port
# and, when bound to 0.0.0.0 or ::, this machine's host names and addresses with that port.
# Entries: "uws.example.org" (any port), "uws.example.org:8443", ".example.org" (the domain and
# every subdomain), "*" (any well-formed Host: only on a trusted network).  Another Host, or a
# malformed one, is never echoed: the links use the listening address instead.
#   ALLOWED_HOSTS = ["uws.example.org", ".lab.example.org"]
ALLOWED_HOSTS = []

# A second origin for job files: results, uploads and /store files are linked at this base URL in
# job documents (XML xlink:href, JSON href/store, /store/<id>), e.g. "https://results.example.org/opus".
# It must reach the same OPUS (a second Apache VirtualHost proxying to it: docs/deployment.md) and
# share no cookies with BASE_URL's host, so that a file a browser renders there cannot use a signed-in
# user's session.  The web client keeps loading previews from its own origin.  Every file is served
# with nosniff, "Content-Security-Policy: sandbox" and as an attachment (unless it is a PNG, JPEG or
# GIF image, plain text, FITS or JSON) whatever this says.  None: files are linked on BASE_URL's origin.
RESULTS_BASE_URL = None

# ---- Execution -----------------------------------------------------------------------------------------
# Execution manager: "local" runs jobs on the server host (one dispatcher per host); "slurm"
# submits them to a SLURM cluster with sbatch (see the SLURM section below and docs/slurm.md).
MANAGER = "local"

# How many jobs the local manager runs at once; the others wait in QUEUED.  0: one per CPU.
MAX_RUNNING_JOBS = 0

# Pre-forked launcher (local manager): the dispatching process keeps one small launcher process that
# has imported the job wrapper once and forks a wrapper per job, instead of starting a new Python
# interpreter per job (about 30 ms less from PHASE=RUN to the job's end).  If the launcher fails, the
# job is started the old way and a new launcher is started.  False: a new interpreter per job.
LOCAL_PREFORK = True

# SQLite only: job creations are written by a small writer process that each server process keeps
# (python -I -S, the standard library only), not by the request threads.  A request thread holding
# the host's SQLite write lock had to wait for the GIL behind the other request threads at every
# SQLite call, so the lock was held ten times longer than SQLite needed.  If the writer dies, the
# jobs it was writing are looked up and written in-process when absent: none is lost or doubled.
# False: the request threads write, as before.
SQLITE_WRITER_PROCESS = True

# executionDuration in seconds when a job definition gives none (0 = unlimited).
DEFAULT_EXECUTION_DURATION = 3600

# The longest executionDuration any job may have, in seconds; longer requests (and 0 =
# unlimited) are lowered to this.  0: no cap.
MAX_EXECUTION_DURATION = 86400

# Seconds a stopped job's processes get between SIGTERM and SIGKILL (abort, time limit).
KILL_GRACE = 2.0

# How long (seconds) a job wrapper keeps retrying its final report while the server is away.
# Jobs that finish during a longer outage are still recovered when the server starts again.
CALLBACK_RETRY_SECONDS = 900

# Secret for the per-job callback tokens (HMAC-SHA256).  None: a random secret is generated
# once into DATA_DIR/secret.key (mode 0600).  Set it explicitly when several hosts share jobs.
# Users' tokens are stored as HMAC-SHA256 under a key derived from it too: changing the secret
# invalidates every user's token (and session); reissue them with `opus user token <name>`, which
# works without signing in.
SECRET_KEY = None

# ---- The job sandbox (SECURITY.md) ---------------------------------------------------------------------
# Job scripts are untrusted code: each runs in a bubblewrap sandbox that sees its own work directory,
# its inputs and the system read-only, and nothing of the server (not DATA_DIR, other jobs, this
# file).  "none" runs them unsandboxed with the rights of the process that starts them: only for a
# trusted, single-user server.  With "bwrap" and no working bubblewrap, no job starts (they wait in
# QUEUED) and /availability says why.
JOB_SANDBOX = "bwrap"
# The unprivileged OS user that runs job scripts when OPUS (or a SLURM job) runs as root; `opus init`
# creates it, `opus check` checks the sandbox works.  Not used when OPUS runs as another user: jobs
# then run in a user namespace, under that user's uid.
JOB_USER = "opus-job"
# The bubblewrap executable (Debian package bubblewrap).
JOB_SANDBOX_BWRAP = "bwrap"
# Extra directories every job may read (software, catalogues), mounted read-only at the same path.
#   JOB_SANDBOX_READ_ONLY = ("/data/catalogues", "/opt/ctools")
JOB_SANDBOX_READ_ONLY = ()
# The shell of a job script whose definition names none ("shell"): "plain" (a non-login bash with
# PATH /usr/local/bin:/usr/bin:/bin) or "login" (bash -l: /etc/profile and /etc/profile.d/*.sh, as the
# original OPUS ran scripts; what they load must be visible in the sandbox: /usr, /etc, /opt or above).
JOB_SHELL = "plain"

# ---- Job life ---------------------------------------------------------------------------------------------
# Seconds from creation to a job's default destruction time (30 days).
DESTRUCTION_INTERVAL = 30 * 86400

# The furthest after creation (seconds) a client may move the destruction time (one year).
MAX_DESTRUCTION_INTERVAL = 365 * 86400

# What destruction does: "delete" (job, files and results forgotten; later requests get 404) or
# "archive" (phase ARCHIVED, results deleted, metadata kept; listed only with PHASE=ARCHIVED).
DESTRUCTION_POLICY = "delete"

# Seconds between runs of the destruction sweep inside the server (one process per host runs
# it).  0 disables it: then run `opus maintenance` from cron.
MAINTENANCE_INTERVAL = 60

# ---- Requests ---------------------------------------------------------------------------------------------
# The longest a blocking `GET <job>?WAIT=n` is held, in seconds; WAIT=-1 means this.  Keep it
# well under client timeouts (pyvo waits 600 s) and under gunicorn's worker timeout.
MAX_WAIT = 60

# The most blocking WAITs one server process holds at once.  Each holds one of the process's
# request threads; when WAITs held them all, every other request to the process (GET, creation,
# /availability) would queue until one ended.  Beyond this number a WAIT is answered at once with
# the job as it is (UWS allows a server to cap blocking under load), logged (a WARNING at most once
# a minute) and counted (metric opus_waits_answered_at_once_total).  None: the process's request
# threads less a tenth of them (at least 2) when the server tells OPUS its threads (gunicorn with
# this project's gunicorn.conf.py: 1,000 threads -> 900; Apache mod_wsgi: threads=32 -> 29), else
# no limit (`opus serve` starts a thread per request).  0: WAIT never blocks.
MAX_HELD_WAITS = None

# Accept job parameters POSTed to the job URL itself (UWS good practice).  DALI services must
# refuse them: set False, and clients POST to <job>/parameters instead.  PHASE and ACTION are
# always accepted at the job URL.
PARAMETERS_AT_JOB_URL = True

# Largest request body for forms (bytes) and largest multipart upload (bytes); bigger: 413.
MAX_BODY_SIZE = 1024 * 1024
MAX_UPLOAD_SIZE = 1024 * 1024 * 1024

# Most parameters in one request (more: 400), and the longest parameter value in UTF-8 bytes
# (longer: 413; at most 130000).  Values reach jobs as environment variables, which Linux caps at
# 128 KiB: send larger content as a file upload.
MAX_PARAMETERS = 200
MAX_PARAMETER_VALUE = 100_000

# Request limits (docs/deployment.md, "Request limits").  Most fields (urlencoded) or parts
# (multipart) in one form, counted while parsing, so that a body of 100,000 tiny parts is refused
# at the first one over (400).  0: MAX_PARAMETERS + 16.  At least MAX_PARAMETERS otherwise.
MAX_FORM_PARTS = 0
# Largest job wrapper report (POST /handler/job_event, which anyone can reach: the body is read
# before its token is checked).  A report lists the job's results, about 200 bytes each, so 256 KiB
# holds some 1,300.  A larger one is refused (413) and the server applies the report.json the
# wrapper left instead, when the wrapper ends (local) or the SLURM job's end is seen.  The sign-in
# form takes at most 8 KiB and JSON bodies nest at most 32 deep; these are not settings.
MAX_REPORT_SIZE = 256 * 1024

# ---- Parameters and inputs (docs/job-definitions.md) -------------------------------------------------
# A parameter the job definition does not declare is refused with 400, naming the ones it has.
# True: accept and ignore such names instead (for generic clients that send extra ones, e.g.
# RESPONSEFORMAT or MAXREC).
IGNORE_UNKNOWN_PARAMETERS = False
# Hosts whose http(s) URLs clients may give as job inputs, against server-side request forgery:
# "data.example.org" (exactly), ".example.org" (the domain and its sub-domains), "*" (any host whose
# addresses are all public: never loopback, private or link-local).  Empty: clients cannot give URLs
# (they upload files).  The hosts of the definitions' URL templates ($ID) are always allowed.  URL
# inputs are fetched by the job wrapper before the script starts, not inside the request: with
# SLURM, the compute nodes need to reach these hosts.
INPUT_URL_HOSTS = ()
# Fetching one URL input: at most this many seconds and bytes; beyond, the job ends in ERROR.
INPUT_URL_TIMEOUT = 300
INPUT_URL_MAX_SIZE = 1024 * 1024 * 1024

# ---- Identity (SECURITY.md) ----------------------------------------------------------------------------
# Users and their tokens are managed with `opus user ...` or the admin API (/admin/users); `opus
# init` creates the first admin and prints its token once.  There is no default password.
#
# Requests without credentials act as the anonymous user (True) or get 401 (False).  The
# embedded default is True so that OPUS is easy to try; set False on a public server.
ALLOW_ANONYMOUS = True

# Accepted credentials: HTTP Basic "name:token", and "Authorization: Bearer <token>".
AUTH_BASIC = True
AUTH_BEARER = True

# Trust the REMOTE_USER that the front end sets (Apache authentication under mod_wsgi, or a proxy
# that authenticates and sets it).  Only when clients cannot reach OPUS except through that
# front end: whoever can set REMOTE_USER can be anyone.
AUTH_REMOTE_USER = False

# Job definitions that a REMOTE_USER without a stored user may use ("*": all).
REMOTE_USER_JOBDEFS = ("*",)

# Job definitions the anonymous user may use ("*": all; (): none).
ANONYMOUS_JOBDEFS = ("*",)

# Unfinished jobs (PENDING to EXECUTING) a user may have at once, unless the user has a limit of
# its own; 0: no limit.  Anonymous callers share one such limit.
DEFAULT_MAX_ACTIVE_JOBS = 0

# Failed sign-in throttling, for HTTP Basic, Bearer tokens and the web sign-in form.  After
# SIGNIN_MAX_FAILURES_PER_NAME failures within SIGNIN_FAILURE_WINDOW seconds, a user name (for Bearer:
# the token's id) gets 429 with Retry-After, with no check at all, until the oldest failure is
# SIGNIN_FAILURE_WINDOW seconds old; the same for a client address after
# SIGNIN_MAX_FAILURES_PER_ADDRESS failures.  0 turns one kind off.  Successful sign-ins are not counted
# and not slowed.  The address is REMOTE_ADDR from the WSGI server (IPv6: per /64), never
# X-Forwarded-For: behind a reverse proxy every client has the proxy's address, so there either keep
# the per-address limit as a brake on the whole server or set it to 0 and limit at the proxy.  Counts
# live in each process's memory: with N gunicorn workers a client gets up to N times the limits.
SIGNIN_FAILURE_WINDOW = 300
SIGNIN_MAX_FAILURES_PER_NAME = 10
SIGNIN_MAX_FAILURES_PER_ADDRESS = 100

# ---- Accounts: passwords, registration, service tokens (SECURITY.md, "Accounts") ---------------------
# Self-registration at /web/register: "off"; "open" (the new account works at once); "approved" (it
# is created disabled and an admin enables it: PATCH /admin/users/<name> {"enabled": true}).
REGISTRATION = "off"
# Job definitions a self-registered user may use ("*": all).
REGISTRATION_JOBDEFS = ("*",)
# Registrations accepted from one client address (REMOTE_ADDR) per hour.
REGISTRATION_MAX_PER_ADDRESS = 5
# Passwords (web sign-in only; HTTP clients use tokens): shortest length, and the argon2id cost of new
# hashes (iterations, memory in KiB; at most 2 hashes run at once per process).
PASSWORD_MIN_LENGTH = 10
PASSWORD_HASH_TIME_COST = 3
PASSWORD_HASH_MEMORY_COST = 65536
# Seconds an admin-issued password reset link (POST /admin/users/<name>/reset) stays valid.
PASSWORD_RESET_LIFETIME = 24 * 3600
# Longest life of a service token (a named token with a scope, made on the profile page), in days.
SERVICE_TOKEN_MAX_DAYS = 365

# ---- Web client (README, "The web client") ------------------------------------------------------------
# Other sites whose pages may call this API from visitors' browsers (CORS), as "scheme://host[:port]".
# A listed origin may use the visitor's OPUS session (cookie; it must send the session's CSRF token,
# from GET /web/session); "*" lets any site call the API, but only with a token, never the cookie.
CORS_ORIGINS = ()

# Seconds a web session lasts after signing in with a token.  Replacing the user's token (or
# disabling the user) ends all the user's sessions at once.
SESSION_LIFETIME = 8 * 3600

# Where the web client's npm libraries are, served at /web/lib/ (default: the installed package's
# opus/web/lib, else the checkout's node_modules/, where `npm ci` in scripts/setup.sh puts them).
# WEB_LIBRARIES_DIR = "/opt/opus/node_modules"

# ---- The site's identity on the web pages (README, "The web client") -------------------------------
# The name shown in the navigation bar, in page titles and on the home page (/web/).
SITE_TITLE = "OPUS"
# A logo beside it: "" (none), an absolute path to a .png/.jpg/.jpeg/.gif/.webp/.svg/.ico file, which
# OPUS serves at /web/static/site-logo (nosniff, sandboxed), or an http(s) URL the visitors' browsers load
# it from (the pages' Content-Security-Policy then allows images from that origin only).
# SITE_LOGO = "/etc/opus/logo.svg"
# The home page's introduction: plain paragraphs separated by blank lines, shown as written (no
# Markdown, no HTML).  "": a standard text saying what OPUS does.
# SITE_HOME_TEXT = """The Example Observatory runs its reduction pipelines here.
#
# Questions: help@example.org"""

# ---- Logging and metrics ------------------------------------------------------------------------------------
# Log level: DEBUG, INFO, WARNING or ERROR.  Every line ends with the request's id (X-Request-ID)
# and the job's id, "-" outside requests (docs/deployment.md, "Logs").
LOG_LEVEL = "INFO"

# GET /metrics, the Prometheus metrics (docs/deployment.md, "Metrics"), is for admins only:
# Prometheus sends an admin's token (bearer_token or basic_auth).  True serves it to anyone
# without credentials: then restrict /metrics at the front end (e.g. Apache `Require ip`), as
# the figures describe the service's use.  The counts of the server's processes are totalled
# through DATA_DIR/run/metrics (prometheus_client's multiprocess files, cleared when the server starts).
METRICS_PUBLIC = False

# ---- SLURM (MANAGER = "slurm"; see docs/slurm.md) ------------------------------------------------------
# The server host must be a SLURM submit host sharing DATA_DIR (and this OPUS installation) with
# the compute nodes.
# Directory holding sbatch, squeue and scancel; "" finds them on PATH.
SLURM_BIN_DIR = ""

# Partition for jobs whose definition and parameters name none (None: the cluster's default).
SLURM_PARTITION = None

# Partitions a job may ask for with the slurm_partition parameter; () allows any valid name.
SLURM_PARTITIONS = ()

# Account charged when neither the definition nor the job names one (None: the user's default).
SLURM_ACCOUNT = None

# Seconds added to executionDuration before rounding up to SLURM's whole minutes for --time.  The
# wrapper stops the job to the second; --time is only the backstop.
SLURM_TIME_MARGIN = 60

# Minutes between reconciliations: one squeue for every job at once (also done at start-up).
SLURM_RECONCILE_MINUTES = 5.0

# No longer used (kept so that old settings files load): an sbatch that fails for a transient reason
# (controller unreachable, time-out, ssh) keeps the job QUEUED; one back-off (1 ... 30 s, no cap)
# retries every waiting job once SLURM answers.  Only a refusal is an ERROR.
SLURM_SUBMIT_RETRIES = 3

# The cluster's jobcomp/filetxt log (JobCompLoc), readable by the server: how jobs that ended
# without the wrapper's report ended (cancelled, time limit, node failure, out of memory).
# None: squeue is asked instead.
SLURM_JOBCOMP_LOG = None

# Python interpreter on the compute nodes that runs the job wrapper (None: the server's own;
# with SLURM_REMOTE_DIR, "python3").
SLURM_PYTHON = None

# Server and cluster on different hosts (docs/slurm.md): run sbatch/squeue/scancel on a login
# node through ssh.  None: on this host.
SLURM_SSH_HOST = None
SLURM_SSH_USER = None
SLURM_SSH_PORT = 22
# Private key (no passphrase) and known_hosts file for that ssh; None: ssh's own defaults.
SLURM_SSH_KEY = None
SLURM_SSH_KNOWN_HOSTS = None
# Cluster-side directory for job directories when the cluster does not share DATA_DIR; files are
# then copied both ways over ssh.  None: DATA_DIR is shared.  Needs SLURM_SSH_HOST.
SLURM_REMOTE_DIR = None

# ---- Notifications and sharing (README, "Notifications and sharing"; SECURITY.md, "Share links") ----
# SMTP server for e-mail: a job's end to its owner (created with NOTIFY=email, or NOTIFY=digest for the
# daily digest), a proposed job definition to the admins.  "" sends no e-mail (NOTIFY=email is refused).
SMTP_HOST = ""
SMTP_PORT = 25                 # 587 with "starttls", 465 with "ssl"
SMTP_SECURITY = "none"         # "none", "starttls" or "ssl" (the server's certificate is verified)
SMTP_USER = None               # with SMTP_PASSWORD: SMTP authentication (keep this file mode 0600)
SMTP_PASSWORD = None
SMTP_TIMEOUT = 30.0            # seconds per connection
MAIL_FROM = "opus@localhost"   # the From address of every message
# Told of every proposed job definition, besides the admins who gave an address (PUT /notifications).
MAIL_ADMINS = ()
# Hour of the day (UTC, 0-23) the daily digest goes out: NOTIFY=digest jobs that ended since the last
# one, in one message per user.  None: no digest (NOTIFY=digest is refused).
MAIL_DIGEST_HOUR = None
# WEBHOOK=<url> on a job: a JSON POST at each of its phase changes, only to hosts INPUT_URL_HOSTS
# allows (with "*": public addresses only), connecting to the address that was checked.
WEBHOOKS = False
# Longest life of a share link, in seconds; a longer lifetime asked for is cut to it.
SHARE_MAX_LIFETIME = 30 * 86400

# ---- Single sign-on: OpenID Connect (docs/single-sign-on.md; SECURITY.md, "Single sign-on") -----------
# The identity provider's issuer URL (https), e.g. "https://login.example.org/realms/astro" (Keycloak)
# or "https://aai.egi.eu/auth/realms/egi" (EGI Check-in); its metadata is read from
# <issuer>/.well-known/openid-configuration.  "" (the default): no single sign-on.
OIDC_ISSUER = ""
# The client registered at the provider (confidential, authorization code flow), with the redirect URI
# <BASE_URL>/web/signin/oidc/callback.  Keep this file mode 0600 when it holds the secret.
OIDC_CLIENT_ID = ""
OIDC_CLIENT_SECRET = ""
# The sign-in page's button: "Sign in with <OIDC_PROVIDER_NAME>".
OIDC_PROVIDER_NAME = "your organisation"
# Scopes asked for ("openid" is always sent); add the one that releases the groups claim if needed.
OIDC_SCOPES = ("openid", "profile", "email")
# The ID token claims that name the user (on its first sign-in) and list its groups.
OIDC_USERNAME_CLAIM = "preferred_username"
OIDC_GROUPS_CLAIM = "groups"
# Create a user at its first sign-in (it may use REGISTRATION_JOBDEFS); False: an admin creates the
# account and links the identity to it (POST /admin/users/<name>/oidc).
OIDC_CREATE_USERS = False
# Groups of the groups claim that make a user admin, or editor; applied again at every sign-in.
# () (the default) leaves that role as an admin set it.
OIDC_ADMIN_GROUPS = ()
OIDC_EDITOR_GROUPS = ()
# {group: [job definition names, or "*"]}: a user may use the definitions of its groups, set at every
# sign-in.  None leaves the user's definitions as they are.
OIDC_JOBDEF_GROUPS = None
# Seconds OPUS waits for the provider (metadata, keys, code exchange) before answering 502.
OIDC_TIMEOUT = 10.0
