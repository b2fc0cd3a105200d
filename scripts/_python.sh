# Sourced by the scripts: find an interpreter for a given minor version (pyenv first, then PATH).
find_python() {
    local want="$1" root cand
    if command -v pyenv >/dev/null 2>&1; then
        root="$(pyenv root)"
        for cand in "$root"/versions/"$want".*/bin/python; do
            [ -x "$cand" ] && { echo "$cand"; return 0; }
        done
    fi
    for cand in "python$want" python3; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    return 1
}

# make_venv DIR MINOR EXTRAS: create DIR from Python MINOR if missing, install the project with EXTRAS.
make_venv() {
    local dir="$1" want="$2" extras="$3" py
    if [ ! -x "$dir/bin/python" ]; then
        py="$(find_python "$want")" || { echo "Python $want not found (pyenv or PATH)" >&2; return 1; }
        "$py" -m venv "$dir"
    fi
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -U pip >/dev/null
    "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
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
