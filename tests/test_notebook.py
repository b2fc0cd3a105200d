"""A real notebook: cells define a function, a lambda and a Task subclass and run them on workers.

tests/notebooks/interactive.ipynb is executed by nbclient on an ipykernel kernel of
this interpreter, once per backend; the test reads what each cell printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]
HERE = Path(__file__).parent / "notebooks"


def _outputs(cell: dict) -> tuple[list[str], list[str]]:
    """The cell's stdout lines and its errors.

    The kernel may flush one printed line as two stream outputs (seen on 3.13.18:
    "executor-function" and " 101"), so the stream text is joined before it is split into lines.
    """
    stdout: list[str] = []
    errors: list[str] = []
    for output in cell["outputs"]:
        if output["output_type"] == "stream" and output["name"] == "stdout":
            stdout.append(output["text"])
        elif output["output_type"] == "error":
            errors.append(
                f"{output['ename']}: {output['evalue']}\n" + "\n".join(output["traceback"])
            )
    return "".join(stdout).splitlines(), errors


def test_notebook_runs_its_functions_on_workers(backend, tmp_path):
    executed = tmp_path / "executed.ipynb"
    env = dict(os.environ)
    env["RUNTIME_NOTEBOOK_BACKEND"] = backend
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env["HOME"] = str(tmp_path)  # nothing from the user's jupyter/ipython config
    out = subprocess.run(
        [
            sys.executable,
            str(HERE / "run_notebook.py"),
            str(HERE / "interactive.ipynb"),
            str(executed),
        ],
        capture_output=True,
        text=True,
        timeout=220,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    cells = {cell["id"]: _outputs(cell) for cell in nbformat.read(executed, as_version=4).cells}
    for cell_id, (_, errors) in cells.items():
        assert not errors, f"cell {cell_id} failed:\n" + "\n".join(errors)
    assert cells["setup"][0] == [f"python {sys.executable}", "main-has-file False"]
    assert cells["executor"][0] == [
        "executor-function 101",
        "executor-lambda [0, 1, 4, 9, 16]",
        "executor-unordered [100, 101, 102]",
    ]
    assert cells["pool"][0] == [f"pool 2 ['{backend}:True', '{backend}:True']"]
    assert cells["aio"][0] == ["aio-run 102", "aio-map [1, 4, 9]", "aio-imap [0, 1, 4, 9]"]
