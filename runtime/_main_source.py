"""Task code that ``parallel-runtime run --source`` takes from stdin (``-``) or from a ``.py`` file.

A ``pkg.mod:Name`` reference is imported by every worker, so it never involves an
interactive ``__main__``. With ``--source``, a bare ``Name`` (no colon) names an
object of that code. Code piped on stdin is the CLI's interactive case: there
is no module a worker could import it from. It runs once, as this process's
``__main__`` without a file (as ``python -`` would run it), so its task classes and
bootstrap travel to the workers by value (``runtime._pickling``), like a REPL's.
A path to a ``.py`` file that is not on ``sys.path`` runs as the main script
instead: workers re-import that file (by reference, as for ``python jobs.py``), so
code that must run only once belongs under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import os
import sys
import types
from typing import IO, Any

from ._errors import ReferenceNotFound

__all__ = ["load_main_source", "lookup"]

STDIN = "-"


def load_main_source(where: str, stdin: IO[str]) -> types.ModuleType:
    """Run the code of ``where`` (a .py path, or ``-`` for stdin) once as ``__main__``."""
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    if where == STDIN:
        text, filename = stdin.read(), "<stdin>"
    else:
        filename = os.path.abspath(where)
        try:
            with open(filename, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ReferenceNotFound(f"cannot read the task source {where!r}: {exc}") from exc
        main.__file__ = filename
    code = compile(text, filename, "exec")
    sys.modules["__main__"] = main
    if where != STDIN:
        # Objects a worker sends back as __mp_main__.X (the name it re-imports the file under).
        sys.modules["__mp_main__"] = main
    exec(code, main.__dict__)
    return main


def lookup(main: types.ModuleType, name: str) -> Any:
    """``name`` (``Task`` or ``Outer.Task``) in the loaded source; ReferenceNotFound if it is not there."""
    obj: Any = main
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = getattr(main, "__file__", None) or "the code read from stdin"
            raise ReferenceNotFound(f"{where} defines no {name!r}") from None
    return obj
