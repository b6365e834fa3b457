#!/usr/bin/env bash
# Idempotent development set-up for OPUS on a Debian machine.
#
#   scripts/setup.sh           create .venv (if missing) and `pip install -e .[science]`
#                              (science: what the example job gammapy_maps needs),
#                              and Graphviz (dot: provenance graphs) if missing
#   both install bubblewrap and, as root, create the job user (opus-job): the job sandbox
#   scripts/setup.sh --test    same with the [test,science] extras, plus the system
#                              packages the tests need (PostgreSQL server,
#                              openssh-server, chromium, apache2 with mod_wsgi
#                              and mod_auth_openidc;
#                              SLURM: scripts/slurm-cluster.sh)
#   both also run `npm ci`: the web client's libraries of package-lock.json (node_modules/)
#
# Works from any cwd.  Output is short: one line per step, and during the long
# installs (pip, apt-get) one line per package; on failure the tail of the failing
# command's log is printed.  A stamp file in .venv makes re-runs fast when
# pyproject.toml/setup.py have not changed; OPUS_SETUP_FORCE=1 forces a
# full re-install.
set -euo pipefail

WITH_TEST=0
for arg in "$@"; do
    case "$arg" in
        --test) WITH_TEST=1 ;;
        -h|--help)
            sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg (usage: scripts/setup.sh [--test])" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { echo "setup: $*" >&2; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }

# run_quiet DESCRIPTION CMD...: run CMD with output captured; show it on failure.
run_quiet() {
    local what="$1"; shift
    local out rc=0
    out="$(mktemp "${TMPDIR:-/tmp}/opus-setup.XXXXXX")"
    "$@" >"$out" 2>&1 </dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "setup: ERROR: $what failed (exit $rc): $*" >&2
        echo "---- last 40 lines of output ----" >&2
        tail -n 40 "$out" >&2
        echo "---------------------------------" >&2
        rm -f "$out"
        exit "$rc"
    fi
    rm -f "$out"
}

# >>> progress (tests/test_first_run.py reads this block)
# progress_lines: the lines of pip's and apt-get's output that say how far they are, one short
# line each on stderr, so that a first install of several minutes is not minutes of silence.
progress_lines() {
    # bash, not awk: Debian's mawk reads a pipe in blocks and would hold the lines back.
    local line n=0 re_collect='^Collecting ([^ ]+)' re_local='^Processing ([^ ]+)' re_size='^ *Downloading .*\(([^)]*)\)$'
    while IFS= read -r line; do
        if [[ $line =~ $re_collect ]]; then
            n=$((n + 1)); echo "setup:   pip: [$n] ${BASH_REMATCH[1]}"
        elif [[ $line =~ $re_local ]]; then  # from a local index or wheel directory
            n=$((n + 1)); echo "setup:   pip: [$n] ${BASH_REMATCH[1]##*/}"
        elif [[ $line == *Downloading*.metadata* ]]; then
            :
        elif [[ $line =~ $re_size ]]; then
            echo "setup:   pip:     downloading ${BASH_REMATCH[1]}"
        elif [[ $line == "Building wheels for "* ]]; then
            echo "setup:   pip: building ${line#*: }"
        elif [[ $line == "Installing collected packages:"* ]]; then
            local names="${line#*: }"; names="${names//,/}"; set -- $names
            echo "setup:   pip: installing $# packages (can take a minute)"
        elif [[ $line == "Successfully installed "* ]]; then
            echo "setup:   pip: done"
        elif [[ $line == "Setting up "* ]]; then
            set -- $line; echo "setup:   apt: ${3:-}"
        fi
    done >&2
}

# run_progress DESCRIPTION CMD...: run_quiet, showing the progress lines as the command runs.
run_progress() {
    local what="$1"; shift
    local out rc
    out="$(mktemp "${TMPDIR:-/tmp}/opus-setup.XXXXXX")"
    set +e
    "$@" </dev/null 2>&1 | tee "$out" | progress_lines
    rc="${PIPESTATUS[0]}"
    set -e
    if [ "$rc" -ne 0 ]; then
        echo "setup: ERROR: $what failed (exit $rc): $*" >&2
        echo "---- last 40 lines of output ----" >&2
        tail -n 40 "$out" >&2
        echo "---------------------------------" >&2
        rm -f "$out"
        exit "$rc"
    fi
    rm -f "$out"
}
# <<< progress

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root to run: $* (run as root or install sudo)"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install these packages by hand: $*"
    export DEBIAN_FRONTEND=noninteractive
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        run_quiet "apt-get update" as_root apt-get update -q
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    run_progress "apt-get install $*" as_root apt-get install -y -q --no-install-recommends "$@"
}

# ---------------------------------------------------------------- python
command -v "$PY" >/dev/null 2>&1 || die "$PY not found (need Python >= 3.11)"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "$PY is $("$PY" -V 2>&1); OPUS needs Python >= 3.11"

if [ ! -x "$VENV/bin/python" ]; then
    # Debian's system python needs python3-venv for ensurepip.
    if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    rm -rf "$VENV"
    log "creating $VENV"
    run_quiet "creating the virtualenv" "$PY" -m venv "$VENV"
    run_quiet "upgrading pip" "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -c 'import sys' 2>/dev/null \
    || die "$VENV/bin/python does not run (stale venv?); remove $VENV and re-run"

# ---------------------------------------------------------------- Graphviz
# Provenance graphs (SVG, PNG) are drawn by Graphviz's dot; without it they answer 503.
if ! command -v dot >/dev/null 2>&1; then
    apt_install graphviz
    command -v dot >/dev/null 2>&1 || die "graphviz installed but 'dot' is not on PATH"
fi

# ---------------------------------------------------------------- the job sandbox
# Job scripts run in a bubblewrap sandbox, as the unprivileged job user when OPUS runs as root
# (SECURITY.md).  Without them OPUS starts no jobs (unless JOB_SANDBOX = "none").
if ! command -v bwrap >/dev/null 2>&1 || ! command -v setpriv >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; then
        apt_install bubblewrap util-linux
    else
        log "WARNING: bubblewrap is not installed and this user cannot install it: jobs will not start"
    fi
fi

# ---------------------------------------------------------------- system packages for tests
pg_bin_found() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && return 0
    done
    return 1
}

if [ "$WITH_TEST" -eq 1 ]; then
    if ! pg_bin_found; then
        apt_install postgresql
        pg_bin_found || die "postgresql installed but no pg_ctl/initdb under /usr/lib/postgresql/*/bin"
    fi
    id postgres >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ] \
        || die "OS user 'postgres' missing (the postgresql package should have created it)"
    # The SLURM manager's ssh mode is tested against a real sshd on 127.0.0.1.
    if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; then
        apt_install openssh-server openssh-client
    fi
    # The web client's end-to-end tests drive Debian's Chromium through Playwright, which cannot
    # download a browser of its own here.
    if ! command -v chromium >/dev/null 2>&1; then
        apt_install chromium
    fi
    # The README's curl walkthrough is run by tests/test_docs_commands.py.
    if ! command -v curl >/dev/null 2>&1; then
        apt_install curl
    fi
    # docs/deployment.md's Apache mod_wsgi set-up is run by tests/test_packaging.py, and
    # docs/single-sign-on.md's mod_auth_openidc in front of it by tests/test_oidc_apache.py.
    if [ ! -x /usr/sbin/apache2 ] || [ ! -f /usr/lib/apache2/modules/mod_wsgi.so ] \
            || [ ! -f /usr/lib/apache2/modules/mod_auth_openidc.so ]; then
        apt_install apache2 libapache2-mod-wsgi-py3 libapache2-mod-auth-openidc
    fi
fi

# ---------------------------------------------------------------- web client libraries
# Bootstrap and CodeMirror from the npm registry, pinned by package-lock.json, into node_modules/
# (served at /web/lib/): no CDN, no bundler.  Re-run only when the lock file changes.
if ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
NPM_STAMP="$ROOT/node_modules/.opus-npm-stamp"
NPM_KEY="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)"
if [ "${OPUS_SETUP_FORCE:-0}" = "1" ] || [ ! -f "$NPM_STAMP" ] || [ "$(cat "$NPM_STAMP")" != "$NPM_KEY" ]; then
    log "npm ci (web client libraries)"
    run_quiet "npm ci" npm ci --no-audit --no-fund --ignore-scripts
    echo "$NPM_KEY" >"$NPM_STAMP"
fi

# ---------------------------------------------------------------- pip install -e
if [ "$WITH_TEST" -eq 1 ]; then
    TARGET='.[test,science]'
else
    TARGET='.[science]'
fi

stamp_key() {  # stamp_key TARGET
    {
        echo "target=$1"
        "$VENV/bin/python" -V 2>&1
        local f
        for f in pyproject.toml setup.py setup.cfg; do
            if [ -f "$f" ]; then cat "$f"; fi
        done
    } | sha256sum | cut -d' ' -f1
}

installed_ok() {
    # the distributions we need are present in the venv
    "$VENV/bin/python" - "$WITH_TEST" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
names = ["opus-uws", "pydot", "networkx", "astropy", "numpy", "matplotlib"] + (["pytest", "pyvo", "playwright"] if sys.argv[1] == "1" else [])
for n in names:
    version(n)
EOF
}

STAMP="$VENV/.opus-setup-stamp-$([ "$WITH_TEST" -eq 1 ] && echo test || echo base)"
KEY="$(stamp_key "$TARGET")"
up_to_date() {
    [ "${OPUS_SETUP_FORCE:-0}" != "1" ] || return 1
    installed_ok || return 1
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ] && return 0
    # an up-to-date [test,science] install also satisfies the plain one
    [ "$WITH_TEST" -eq 0 ] && [ -f "$VENV/.opus-setup-stamp-test" ] \
        && [ "$(cat "$VENV/.opus-setup-stamp-test")" = "$(stamp_key '.[test,science]')" ]
}
if up_to_date; then
    log "venv up to date ($TARGET)"
else
    log "pip install -e '$TARGET' (the first time: several minutes, one line per package)"
    rm -f "$STAMP"
    run_progress "pip install -e '$TARGET'" "$VENV/bin/python" -m pip install --progress-bar off -e "$TARGET"
    installed_ok || die "pip install finished but opus-uws (or its extras) is not importable in $VENV"
    echo "$KEY" >"$STAMP"
fi

# The job user (JOB_USER of $OPUS_SETTINGS, else opus-job), created as `opus init` does.
if [ "$(id -u)" -eq 0 ]; then
    run_quiet "creating the job user" "$VENV/bin/python" -c \
        'from opus.managers.sandbox import ensure_job_user; from opus.settings import load_settings; print(ensure_job_user(load_settings()))'
fi

log "ok ($VENV)"
