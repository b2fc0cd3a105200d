#!/usr/bin/env bash
# Lint, type-check, build and check the sdist and wheel, then run the whole suite on every supported Python
# found here (3.12, 3.13, 3.14, 3.15: pyenv, PATH, the debian-python prefixes). The newest Python runs the suite
# against the installed wheel (what users get), the others against an editable install.
# Extra arguments go to pytest. Environment: PYTHONS="3.13.0 3.14.2" limits the run to those versions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
ensure_rabbitmq

mapfile -t found < <(find_pythons)
mapfile -t all_found < <(printf '%s\n' "${found[@]}")
if [ -n "${PYTHONS:-}" ]; then
    mapfile -t found < <(printf '%s\n' "${found[@]}" | awk -v want=" ${PYTHONS} " 'index(want, " "$1" ")')
fi
echo "== Pythons found:"
printf '   %s\n' "${found[@]}"
for minor in $SUPPORTED_MINORS; do
    if ! printf '%s\n' "${all_found[@]}" | grep -q "^$minor\."; then
        echo "   (no Python $minor found: not tested)"
    elif ! printf '%s\n' "${found[@]}" | grep -q "^$minor\."; then
        echo "   (Python $minor left out by PYTHONS=$PYTHONS)"
    fi
done
[ "${#found[@]}" -ge 1 ] || { echo "no supported Python found (need one of: $SUPPORTED_MINORS)" >&2; exit 1; }

newest="${found[-1]}"
newest_version="${newest%% *}"
dev=".venvs/$newest_version"
echo "== installing the dev environment ($newest_version)"
make_venv "$dev" "${newest#* }" -e ".[dev]"
echo "== lint";  "$dev/bin/python" -m ruff check runtime tests benchmarks && "$dev/bin/python" -m ruff format --check runtime
echo "== types"; "$dev/bin/python" -m mypy

echo "== build the sdist and the wheel, check them"
rm -rf dist
"$dev/bin/python" -m build -q --outdir dist . >/dev/null
"$dev/bin/python" -m twine check --strict dist/*
"$dev/bin/python" - <<'EOF'
import glob, sys, zipfile
wheel, = glob.glob("dist/*.whl")
top = sorted({name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()})
extra = [t for t in top if t != "runtime" and not t.endswith(".dist-info")]
print(f"   {wheel}: {', '.join(top)}")
sys.exit(f"the wheel installs more than 'runtime': {extra}" if extra else 0)
EOF

root="$PWD"
declare -a summary=()
total_passed=0
total_failed=0
status=0
run_suite() {  # run_suite LABEL PYTHON DIR: the suite from DIR, counting the results
    local label="$1" py="$2" dir="$3" log rc=0 passed failed
    log="$(mktemp)"
    echo "== tests on $label"
    (cd "$dir" && "$py" -m pytest -q -p no:cacheprovider "${@:4}") 2>&1 | tee "$log" || rc=$?
    # pytest's closing line: "358 passed, 1 skipped in 63.2s", "2 failed, 356 passed, 1 error in ...".
    read -r passed failed < <(tail -n 3 "$log" | awk '{
        for (i = 2; i <= NF; i++) {
            w = $i; sub(/[,;]$/, "", w)
            if (w == "passed") p = $(i - 1)
            if (w == "failed" || w == "error" || w == "errors") f += $(i - 1)
        }} END {print p + 0, f + 0}')
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    summary+=("$label: $passed passed, $failed failed (exit $rc)")
    [ "$rc" -eq 0 ] || status=1
    rm -f "$log"
}

for entry in "${found[@]}"; do
    version="${entry%% *}"
    py="${entry#* }"
    if [ "$entry" = "$newest" ]; then
        # The installed wheel, from a copy of the tree without the package, so nothing imports ./runtime.
        venv=".venvs/wheel-$version"
        rm -rf "$venv"
        wheel="$(ls dist/*.whl)"
        make_venv "$venv" "$py" "$wheel[test]"
        copy="$(mktemp -d)"
        git ls-files -z | grep -zv '^runtime/' | xargs -0 cp --parents -t "$copy"
        where="$(cd "$copy" && "$root/$venv/bin/python" -c 'import runtime, os; print(os.path.dirname(runtime.__file__))' 2>&1)"
        case "$where" in */site-packages/*) ;; *) echo "the wheel run imports runtime from $where" >&2; status=1 ;; esac
        (cd "$copy" && "$root/$venv/bin/parallel-runtime" bench --help >/dev/null) \
            || { echo "the installed wheel's 'parallel-runtime bench' does not start" >&2; status=1; }
        run_suite "$version (installed wheel: $where)" "$root/$venv/bin/python" "$copy" "$@"
        rm -rf "$copy"
    else
        venv=".venvs/$version"
        make_venv "$venv" "$py" -e ".[test]"
        run_suite "$version (editable)" "$root/$venv/bin/python" "$root" "$@"
    fi
done

echo "== summary"
printf '   %s\n' "${summary[@]}"
echo "all: $total_passed passed, $total_failed failed"
exit "$status"
