#!/usr/bin/env bash
# Run the OPUS test suite: the one test command (README, CI).
#
#   scripts/test.sh [pytest args...]
#
# 1. scripts/setup.sh --test  (venv, editable install, PostgreSQL binaries)
# 2. starts a throw-away PostgreSQL cluster in a temp dir (stopped on exit)
#    and exports OPUS_TEST_PG_URL and OPUS_REQUIRE_PG=1; as root, installs and
#    starts a single-node SLURM cluster (scripts/slurm-cluster.sh) with OPUS's
#    epilog and exports OPUS_REQUIRE_SLURM=1
# 3. runs mypy (strict, [tool.mypy] in pyproject.toml) on opus/, then
#    .venv/bin/python -m pytest -rs [args]
# 4. fails if mypy found an error, if pytest failed, collected no tests (exit 5), or SKIPPED any test
#    (read from a JUnit XML report).  xfail/xpass are reported, not failures.
#    For local runs only, OPUS_ALLOW_SKIPS=1 turns skips into a warning.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { echo "test.sh: $*" >&2; }
STARTED=$SECONDS
took() { local s=$((SECONDS - STARTED)); echo "$((s / 60)) min $((s % 60)) s"; }

bash scripts/setup.sh --test

WORK="$(mktemp -d /tmp/opus-test.XXXXXX)"
chmod 711 "$WORK"   # the postgres OS user must reach $WORK/pg
PGDIR="$WORK/pg"
cleanup() {
    local rc=$?
    bash "$ROOT/scripts/pg-test-server.sh" stop "$PGDIR" || say "WARNING: could not stop the test PostgreSQL in $PGDIR"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/pg-test-server.sh start "$PGDIR" >/dev/null
OPUS_TEST_PG_URL="$(bash scripts/pg-test-server.sh url "$PGDIR")"
export OPUS_TEST_PG_URL
export OPUS_REQUIRE_PG=1
say "OPUS_TEST_PG_URL=$OPUS_TEST_PG_URL"

# A real single-node SLURM cluster whose EpilogSlurmctld is OPUS's (tests/test_slurm.py).  The
# epilog is installed outside the checkout so that slurmctld can always read and run it.
if [ "$(id -u)" -eq 0 ]; then
    install -D -m 0755 scripts/opus-slurm-epilog /usr/local/lib/opus/opus-slurm-epilog
    export OPUS_SLURM_EPILOG=/usr/local/lib/opus/opus-slurm-epilog
    if bash scripts/slurm-cluster.sh status >/dev/null 2>&1; then
        if ! grep -q "^EpilogSlurmctld=$OPUS_SLURM_EPILOG\$" /etc/slurm/slurm.conf; then
            bash scripts/slurm-cluster.sh restart >/dev/null
        fi
    else
        bash scripts/slurm-cluster.sh start >/dev/null
    fi
    export OPUS_REQUIRE_SLURM=1
    say "SLURM cluster ready (EpilogSlurmctld=$OPUS_SLURM_EPILOG)"
else
    say "not root: the SLURM cluster cannot be provisioned; SLURM tests will be skipped (and count as failures)"
fi

JUNIT="$WORK/junit.xml"
LOG="$WORK/pytest.log"
export PYTHONUNBUFFERED=1

# Types first: a strict mypy error fails the run, but pytest still runs so that one run shows both.
MYPY_RC=0
"$ROOT/.venv/bin/mypy" --cache-dir "$WORK/mypy-cache" || MYPY_RC=$?

set +e
"$ROOT/.venv/bin/python" -m pytest -rs --junitxml="$JUNIT" -o junit_family=xunit2 "$@" 2>&1 | (trap "" INT; tee "$LOG")   # tee survives Ctrl-C: see pytest's report
PYTEST_RC=${PIPESTATUS[0]}
set -e

# pytest's closing line, e.g. "==== 12 passed, 1 skipped in 3.21s ====" (ANSI colours stripped)
SUMMARY="$(sed 's/\x1b\[[0-9;]*m//g' "$LOG" \
    | grep -E '^=+ .*(passed|failed|error|errors|skipped|deselected|xfailed|xpassed|no tests ran).* in [0-9.]+s.* =+$' \
    | tail -n 1 || true)"

STATUS=0
if [ "$MYPY_RC" -ne 0 ]; then
    say "FAIL: mypy --strict found errors in opus/ (above)"
    STATUS=1
fi
if [ "$PYTEST_RC" -eq 5 ]; then
    say "FAIL: pytest collected no tests (exit 5)"
    STATUS=1
elif [ "$PYTEST_RC" -ne 0 ]; then
    say "FAIL: pytest exited with $PYTEST_RC"
    STATUS="$PYTEST_RC"
fi

if [ -s "$JUNIT" ]; then
    # prints "<tests> <skipped>" on the first line, then one line per skipped/xfailed test
    REPORT="$("$ROOT/.venv/bin/python" - "$JUNIT" <<'EOF'
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
skipped, xfailed, tests = [], [], 0
for case in root.iter("testcase"):
    tests += 1
    name = "::".join(p for p in (case.get("classname", ""), case.get("name", "")) if p)
    for sk in case.findall("skipped"):
        msg = (sk.get("message") or "").strip().replace("\n", " ")
        if sk.get("type") == "pytest.xfail":
            xfailed.append(f"XFAIL   {name}: {msg}")
        else:
            skipped.append(f"SKIPPED {name}: {msg}")
print(tests, len(skipped))
for line in skipped + xfailed:
    print(line)
EOF
    )" || { say "FAIL: could not parse the JUnit report $JUNIT"; REPORT="0 0"; STATUS=1; }
    read -r N_TESTS N_SKIPPED <<<"$(head -n 1 <<<"$REPORT")"
    DETAILS="$(tail -n +2 <<<"$REPORT")"
    if [ -n "$DETAILS" ]; then
        echo "$DETAILS" | sed 's/^/test.sh:   /' >&2
    fi
    if [ "$N_SKIPPED" -gt 0 ]; then
        if [ "${OPUS_ALLOW_SKIPS:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
            say "WARNING: $N_SKIPPED test(s) skipped (allowed by OPUS_ALLOW_SKIPS=1)"
        else
            say "FAIL: $N_SKIPPED test(s) were SKIPPED (listed above); every test must run"
            [ "$STATUS" -ne 0 ] || STATUS=1
        fi
    fi
    if [ "$N_TESTS" -eq 0 ] && [ "$STATUS" -eq 0 ]; then
        say "FAIL: the JUnit report lists no tests"
        STATUS=1
    fi
elif [ "$PYTEST_RC" -ne 5 ]; then
    say "FAIL: pytest wrote no JUnit report ($JUNIT)"
    [ "$STATUS" -ne 0 ] || STATUS=1
fi

say "the whole run (set-up, PostgreSQL, SLURM, pytest) took $(took)"
# If we printed anything after pytest's closing line, repeat that line so it stays last.
if [ "$STATUS" -ne 0 ] || [ -n "${DETAILS:-}" ] || [ "${N_SKIPPED:-0}" -gt 0 ]; then
    [ -z "$SUMMARY" ] || echo "$SUMMARY"
fi
exit "$STATUS"
