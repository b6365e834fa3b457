# OPUS settings file: copy it, edit it, and point OPUS_SETTINGS at the copy
#   (or pass `opus --settings FILE ...`).
#
# The file is plain Python executed once at start-up.  Every UPPER_CASE name must be one of the
# settings below (a misspelt name is an error, not a silently ignored line).  A setting left out
# keeps the default shown here.  Lines starting with an underscore or in lower case are yours
# (helpers, imports).

# ---- Where things are ------------------------------------------------------------------------------
# Directory for OPUS's state: the SQLite database (by default), one directory per job (uploads,
# work directory, results, stdout/stderr), notification sockets and locks, and the generated
# callback secret.  Default: the `var/` directory of the source tree.
DATA_DIR = "/var/lib/opus"

# SQLAlchemy database URL.  None: SQLite at DATA_DIR/opus.sqlite (the embedded default).
# Production: PostgreSQL through psycopg2, e.g.
#   DATABASE_URL = "postgresql+psycopg2://opus:secret@dbhost:5432/opus"
# Create or upgrade the schema with `opus init` after changing it.
DATABASE_URL = None

# Directory of job definitions, one <name>.json per definition (see docs/job-definitions.md).
# Default: the `jdl/` directory of the source tree.  Files are re-read when they change.
JDL_DIR = "/etc/opus/jdl"

# Public base URL of the service as clients reach it (scheme://host[:port][/prefix]).  Used in
# Location headers and in every link of the UWS documents.  None: taken from each request's
# Host header and script name (fine behind a proxy that passes Host unchanged).
BASE_URL = None

# Base URL the job wrapper posts its reports to (<CALLBACK_URL>/handler/job_event).  It must be
# reachable from where jobs run.  None: BASE_URL, else the URL of the request that started the job.
CALLBACK_URL = None

# ---- Execution -----------------------------------------------------------------------------------------
# Execution manager: "local" runs jobs on the server host (one dispatcher per host); "slurm"
# submits them to a SLURM cluster with sbatch (see the SLURM section below and docs/slurm.md).
MANAGER = "local"

# How many jobs the local manager runs at once; the others wait in QUEUED.  0: one per CPU.
MAX_RUNNING_JOBS = 0

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
SECRET_KEY = None

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

# ---- Web client (README, "The web client") ------------------------------------------------------------
# Other sites whose pages may call this API from visitors' browsers (CORS), as "scheme://host[:port]".
# A listed origin may use the visitor's OPUS session (cookie; it must send the session's CSRF token,
# from GET /web/session); "*" lets any site call the API, but only with a token, never the cookie.
CORS_ORIGINS = ()

# Seconds a web session lasts after signing in with a token.  Replacing the user's token (or
# disabling the user) ends all the user's sessions at once.
SESSION_LIFETIME = 8 * 3600

# Where `npm ci` (scripts/setup.sh) installed Bootstrap and CodeMirror, served at /web/lib/.
# WEB_LIBRARIES_DIR = "/opt/opus/node_modules"

# ---- Logging and metrics ------------------------------------------------------------------------------------
# Log level: DEBUG, INFO, WARNING or ERROR.  Every line ends with the request's id (X-Request-ID)
# and the job's id, "-" outside requests (docs/deployment.md, "Logs").
LOG_LEVEL = "INFO"

# GET /metrics, the Prometheus metrics (docs/deployment.md, "Metrics"), is for admins only:
# Prometheus sends an admin's token (bearer_token or basic_auth).  True serves it to anyone
# without credentials: then restrict /metrics at the front end (e.g. Apache `Require ip`), as
# the figures describe the service's use.
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

# Retries of an sbatch that failed for a transient reason (controller unreachable) before ERROR.
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
