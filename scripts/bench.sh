#!/usr/bin/env bash
# Install into .venv (Python 3.13) and run the quick benchmark against process pools.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
make_venv .venv 3.13 bench
exec .venv/bin/parallel-runtime bench --quick --json bench-out/quick.json --plot bench-out/quick.png "$@"
