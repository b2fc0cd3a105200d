"""The public surface: names, module names, cheap import."""

from __future__ import annotations

import subprocess
import sys

import runtime


def test_all_names_resolve_and_are_public():
    for name in runtime.__all__:
        obj = getattr(runtime, name)
        if isinstance(obj, type):
            assert obj.__module__ == "runtime", name
    assert sorted(runtime.__all__) == runtime.__all__ or len(set(runtime.__all__)) == len(
        runtime.__all__
    )


def test_import_is_cheap():
    code = (
        "import sys, runtime; "
        "heavy = [m for m in ('pika', 'anyio', 'asyncio', 'ssl', 'subprocess', 'selectors', "
        "'prometheus_client', 'http.server', 'cloudpickle') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_cli_info_runs():
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '"default_backend"' in out.stdout
