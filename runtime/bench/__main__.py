"""``python -m runtime.bench``: the same as ``parallel-runtime bench``."""

from __future__ import annotations

import sys

# Absolute, not relative: anyio.to_process workers re-run the parent's __main__ file by path.
from runtime.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
