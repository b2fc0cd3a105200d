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


def test_errors_load_on_first_use_under_their_public_name():
    """``import runtime`` (what every fresh worker does first) defines no classes; the errors
    still show, pickle and compare as ``runtime.X`` whichever way they were imported."""
    code = (
        "import sys, pickle, runtime\n"
        "assert [m for m in sys.modules if m.startswith('runtime.')] == ['runtime._lazy'], sys.modules\n"
        "from runtime._errors import BootstrapError, WorkerCrashed\n"
        "assert BootstrapError.__module__ == WorkerCrashed.__module__ == 'runtime'\n"
        "assert runtime.BootstrapError is BootstrapError and issubclass(WorkerCrashed, runtime.Error)\n"
        "e = pickle.loads(pickle.dumps(BootstrapError('boot failed', 'Traceback: ...')))\n"
        "assert type(e) is BootstrapError and e.remote_traceback == 'Traceback: ...'\n"
        "print(repr(runtime.ConfigurationError('bad')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ConfigurationError('bad')"


def test_cli_info_runs():
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "info", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert '"default_backend"' in out.stdout
