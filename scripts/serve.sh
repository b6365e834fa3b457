#!/usr/bin/env bash
# Set up this machine and serve OPUS on the embedded default: SQLite, local execution, the
# example job definitions of jdl/.  The README's first command.
#
#   scripts/serve.sh [--host H] [--port P]      (default 127.0.0.1:8080)
#   scripts/serve.sh --no-setup ...             skip scripts/setup.sh (.venv is already set up)
#
# Settings: the file named by $OPUS_SETTINGS if set, else the built-in defaults (state in var/).
# It runs scripts/setup.sh (a few minutes the first time, one line per package installed), then
# `opus init` (the database; the first time, the admin user and its token), then `opus serve`,
# and says where the server is, what the admin token is for, and how to stop it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SETUP=1
SERVE_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --no-setup) SETUP=0 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) SERVE_ARGS+=("$arg") ;;
    esac
done
say() { echo "serve: $*" >&2; }

if [ "$SETUP" -eq 1 ]; then
    bash scripts/setup.sh
fi
OPUS="$ROOT/.venv/bin/opus"
[ -x "$OPUS" ] || { say "ERROR: $OPUS is missing: run scripts/serve.sh without --no-setup"; exit 1; }

# What the settings say (the file of $OPUS_SETTINGS, else the defaults).
if ! SETTINGS_VARS="$("$ROOT/.venv/bin/python" - <<'EOF'
import shlex, sys
from opus.settings import ConfigurationError, load_settings
try:
    s = load_settings()
except ConfigurationError as exc:
    sys.exit(f"serve: ERROR: {exc}")
print(f"DATA_DIR={shlex.quote(s.DATA_DIR)}")
print(f"ANONYMOUS={'1' if s.ALLOW_ANONYMOUS else '0'}")
print(f"HAS_SERVICE_USER={'1' if getattr(s, 'SERVICE_USER', None) else '0'}")
EOF
)"; then
    exit 1
fi
eval "$SETTINGS_VARS"

# opus init: alembic's INFO lines (one per migration) are left out; everything on failure.
INIT_ARGS=()
if [ "$(id -u)" -eq 0 ] && [ "$HAS_SERVICE_USER" = 0 ] && "$OPUS" init --help 2>/dev/null | grep -q -- '--user'; then
    INIT_ARGS=(--user root)  # the server this script starts runs as root too
fi
say "opus init (database in $DATA_DIR)"
INIT_LOG="$(mktemp "${TMPDIR:-/tmp}/opus-init.XXXXXX")"
if ! "$OPUS" init "${INIT_ARGS[@]}" >"$INIT_LOG" 2>&1; then
    cat "$INIT_LOG" >&2
    rm -f "$INIT_LOG"
    say "ERROR: opus init failed"
    exit 1
fi
grep -v ' INFO alembic\.' "$INIT_LOG" | sed 's/^/  /' >&2 || true
if grep -q "token, shown only now" "$INIT_LOG"; then
    TOKEN_TEXT="The admin token above (shown only this once: keep it) is for the administrator: sign in
       as \"admin\" with it in the web client (Sign in, then Admin) or use it with curl (-u admin:TOKEN)
       to manage users and job definitions.  .venv/bin/opus user token admin makes a new one."
else
    TOKEN_TEXT="The admin token was printed by the first run; .venv/bin/opus user token admin makes a new one.
       It is for the administrator (the web client's Admin page, user management)."
fi
rm -f "$INIT_LOG"
if [ "$ANONYMOUS" = 1 ]; then
    ACCESS_TEXT="Anyone may use it without signing in (ALLOW_ANONYMOUS = True):
       no token is needed to create and run jobs (README, \"A job's life, with curl\")."
else
    ACCESS_TEXT="Signing in is required (ALLOW_ANONYMOUS = False): .venv/bin/opus user add NAME gives a user a token."
fi

# The banner is printed once the server listens (after opus serve's own line, which has the port).
BANNER="
serve: OPUS is running at @URL@
       web client:  @URL@web/
       try:         curl -s @URL@rest/dummy
       $ACCESS_TEXT
       $TOKEN_TEXT
       Stop it with Ctrl-C; its state stays in $DATA_DIR for the next run.
"
with_banner() {  # bash, not awk: Debian's mawk reads a pipe in blocks and would hold the lines back
    local line shown=0 re='^OPUS serving on (http://[^ ]+)'
    while IFS= read -r line; do
        printf '%s\n' "$line"
        if [ "$shown" = 0 ] && [[ $line =~ $re ]]; then
            printf '%s\n' "${BANNER//@URL@/${BASH_REMATCH[1]}}"
            shown=1
        fi
    done
}
# opus serve checks the schema again: its alembic INFO lines are left out too.
exec "$OPUS" serve "${SERVE_ARGS[@]}" > >(with_banner) 2> >(grep --line-buffered -v ' INFO alembic\.' >&2)
