#!/usr/bin/env bash
# Install into .venvs/bench-X.Y.Z (the newest of Python 3.14, 3.15, 3.13, 3.12 found; Debian's builds are
# provisioned first where ../shared/tools/debian-python exists) and run the quick benchmark against process pools,
# thread pools and the stdlib InterpreterPoolExecutor. Extra arguments go to `parallel-runtime bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
provision_pythons
py=""
for minor in ${BENCH_PYTHON:-3.14 3.15 3.13 3.12}; do
    py="$(find_python "$minor")" && break
done
[ -n "$py" ] || { echo "no supported Python found (need one of: $SUPPORTED_MINORS)" >&2; exit 1; }
venv=".venvs/bench-$(python_version "$py")"
make_venv "$venv" "$py" ".[bench]"
exec "$venv/bin/parallel-runtime" bench --quick --json bench-out/quick.json --plot bench-out/quick.png "$@"
