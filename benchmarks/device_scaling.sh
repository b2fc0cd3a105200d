#!/usr/bin/env bash
# The 16-CPU run (issue 12's scaling dip), made for a bare many-core machine with no network:
#   - the machine's own python3 (3.12 there) and a carried Debian CPython 3.14 (.devpy/py314.tar.xz,
#     self-contained with its glibc, unpacked at the absolute prefix debian-python gave it) with
#     the pure-Python dependencies in .devpy/site;
#   - benchmarks/scaling_dip.py on both, then `python -m runtime.bench.scaling` on 3.14.
# Everything lands in $OUT (JSON + logs); re-plot here with `python -m runtime.bench.scaling --replot`.
set -u
OUT="${OUT:-/tmp/device-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/.devpy/site"
{ lscpu; echo; echo "SMT siblings:"; sort -u /sys/devices/system/cpu/cpu*/topology/thread_siblings_list; } > "$OUT/lscpu.txt" 2>&1
tar -C / -xJf .devpy/py314.tar.xz
P314=/root/.cache/debian-python/3.14/tree/usr/bin/python3.14
python3 -m compileall -q runtime benchmarks >/dev/null 2>&1
"$P314" -m compileall -q runtime benchmarks >/dev/null 2>&1
timeout 150 python3 benchmarks/scaling_dip.py "$OUT/dip-py3.12.json" --repeats 5 --budget 100 > "$OUT/dip-py3.12.txt" 2>&1
echo "dip 3.12: exit $?"; tail -22 "$OUT/dip-py3.12.txt"
timeout 150 "$P314" benchmarks/scaling_dip.py "$OUT/dip-py3.14.json" --repeats 5 --budget 100 > "$OUT/dip-py3.14.txt" 2>&1
echo "dip 3.14: exit $?"; tail -22 "$OUT/dip-py3.14.txt"
timeout 250 "$P314" -m runtime.bench.scaling "$OUT/scaling" --budget 170 > "$OUT/scaling-py3.14.txt" 2>&1
echo "scaling 3.14: exit $?"; tail -5 "$OUT/scaling-py3.14.txt"
