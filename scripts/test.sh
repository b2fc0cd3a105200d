#!/usr/bin/env bash
# Install into .venv (3.13) and .venv312 (3.12); lint, type-check, run the whole suite on both.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
ensure_rabbitmq
make_venv .venv 3.13 dev
make_venv .venv312 3.12 test
echo "== lint";  .venv/bin/python -m ruff check runtime tests
echo "== types"; .venv/bin/python -m mypy
echo "== tests on $(.venv312/bin/python -V)"
.venv312/bin/python -m pytest -q -p no:cacheprovider "$@"
echo "== tests on $(.venv/bin/python -V)"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
