#!/usr/bin/env bash
# Set up this machine and serve OPUS on the embedded default: SQLite, local execution, the
# example job definitions of jdl/.  The README's first command.
#
#   scripts/serve.sh [--host H] [--port P]      (default 127.0.0.1:8080)
#
# Settings: the file named by $OPUS_SETTINGS if set, else the built-in defaults (state in var/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
.venv/bin/opus init
exec .venv/bin/opus serve "$@"
