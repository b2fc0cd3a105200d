# Sourced by the scripts: find the supported Pythons, make virtual environments, start RabbitMQ.
#
# Where Pythons are looked for, in this order: pyenv's versions, PATH (pythonX.Y), and the prefixes that
# ../shared/tools/debian-python unpacks (DEBIAN_PYTHON_HOME, default ~/.cache/debian-python). Two
# interpreters of the same full version count once.

SUPPORTED_MINORS="3.12 3.13 3.14 3.15"
DEBIAN_PYTHON_HOME="${DEBIAN_PYTHON_HOME:-$HOME/.cache/debian-python}"

# python_version PY: "3.14.2" (plus "t" for a free-threaded build), or nothing if PY does not run.
python_version() {
    "$1" -c 'import sys, sysconfig; print("%d.%d.%d%s" % (*sys.version_info[:3], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))' 2>/dev/null
}

# candidates MINOR: every path that may hold a Python MINOR (existing or not; callers check).
candidates() {
    local want="$1" root
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root)"
        ls -d "$root"/versions/"$want".*/bin/python 2>/dev/null | sort -V || true
    fi
    for name in "python$want" "python${want}t"; do
        # `command -v` would find pyenv's shim, which fails unless selected: take real files only.
        local dir
        local IFS=:
        for dir in $PATH; do
            case "$dir" in *pyenv/shims*) continue ;; esac
            if [ -x "$dir/$name" ]; then echo "$dir/$name"; fi
        done
    done
    echo "$DEBIAN_PYTHON_HOME/$want/tree/usr/bin/python$want"
}

# find_pythons: one line "VERSION PATH" per distinct supported interpreter found, oldest first.
find_pythons() {
    local minor cand version seen=" "
    for minor in $SUPPORTED_MINORS; do
        while read -r cand; do
            [ -x "$cand" ] || continue
            version="$(python_version "$cand")" || continue
            [ -n "$version" ] || continue
            case "$version" in "$minor".*) ;; *) continue ;; esac
            case "$seen" in *" $version "*) continue ;; esac
            seen="$seen$version "
            echo "$version $cand"
        done < <(candidates "$minor")
    done
}

# find_python MINOR: the newest interpreter of that minor version found.
find_python() {
    find_pythons | awk -v m="$1" 'index($1, m".") == 1 && $1 !~ /t$/ {p = $2} END {if (p) print p; else exit 1}'
}

# provision_pythons: have ../shared/tools/debian-python unpack 3.13 (latest), 3.14 and 3.15 if the tool exists.
provision_pythons() {
    local tool
    tool="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/../shared/tools/debian-python"
    if [ -x "$tool" ]; then
        echo "== provisioning Python 3.13 (latest), 3.14, 3.15 with $tool" >&2
        "$tool" 3.13 3.14 3.15 >&2 || echo "debian-python failed; testing what is there" >&2
    fi
}

# ensure_pip VENV_DIR: some builds (Debian's) have no ensurepip wheels; bootstrap pip from a wheel then.
ensure_pip() {
    local dir="$1" tmp whl
    "$dir/bin/python" -m pip --version >/dev/null 2>&1 && return 0
    tmp="$(mktemp -d)"
    python3 -m pip download -q --no-deps -d "$tmp" pip >/dev/null
    whl="$(ls "$tmp"/pip-*.whl | head -1)"
    "$dir/bin/python" "$whl/pip" install -q --no-index "$whl" >/dev/null
    rm -rf "$tmp"
}

# pip_install VENV_DIR ARGS...: pip install -q, failing when pip fails. This machine's pip configuration names
# extra local indexes that may not exist; their warnings are dropped.
pip_install() {
    local dir="$1"
    shift
    "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    return "${PIPESTATUS[0]}"
}

# make_venv DIR PYTHON SPEC: create DIR from the interpreter PYTHON if missing, install SPEC into it.
# SPEC is a pip argument list, e.g. "-e .[dev]" or "dist/x.whl[test]".
make_venv() {
    local dir="$1" py="$2"
    shift 2
    if [ ! -x "$dir/bin/python" ]; then
        "$py" -m venv "$dir" 2>/dev/null || "$py" -m venv --without-pip "$dir"
    fi
    ensure_pip "$dir"
    pip_install "$dir" -U pip
    pip_install "$dir" "$@"
    "$dir/bin/python" -m pip check >/dev/null || { "$dir/bin/python" -m pip check; return 1; }
}

ensure_rabbitmq() {
    if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
        echo "RabbitMQ is down: starting it" >&2
        rabbitmq-server -detached
        for _ in $(seq 1 60); do
            (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
            sleep 1
        done
    fi
    rabbitmqctl await_startup >/dev/null 2>&1 || true
}
