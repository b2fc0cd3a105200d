"""Execute a notebook with nbclient on a real ipykernel kernel of *this* interpreter.

Usage: python tests/notebooks/run_notebook.py IN.ipynb OUT.ipynb

The kernel spec is written to a temporary directory and points at sys.executable
(``python -m ipykernel_launcher``), so no user-wide kernelspec is involved. It runs
in its own process because jupyter_client leaves zmq sockets to the garbage
collector, whose ResourceWarnings would land in unrelated tests under
``filterwarnings = error``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


def main(source: str, target: str) -> None:
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as tmp:
        spec_dir = os.path.join(tmp, "kernels", "runtime-test")
        os.makedirs(spec_dir)
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "runtime test kernel",
            "language": "python",
        }
        with open(os.path.join(spec_dir, "kernel.json"), "w") as f:
            json.dump(spec, f)
        os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(tmp, "runtime")
        ksm = KernelSpecManager(kernel_dirs=[os.path.join(tmp, "kernels")])
        km = KernelManager(kernel_spec_manager=ksm, kernel_name="runtime-test")
        nb = nbformat.read(source, as_version=4)
        NotebookClient(nb, km=km, timeout=120, allow_errors=True).execute()
        nbformat.write(nb, target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
