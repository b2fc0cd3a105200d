"""The async server benchmark (benchmarks/server) runs end to end and writes its JSON. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "server" / "run.py"


def _load_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("server_bench_run", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wrk_output_is_parsed() -> None:
    run = _load_run()
    sample = """Running 1s test @ http://127.0.0.1:1/fib/16
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.79ms  600.00us  12.00ms   90.00%
  Latency Distribution
     50%  650.00us
     75%    3.00ms
     90%    3.50ms
     99%    1.20s
  3126 requests in 1.00s, 240.00KB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3125.50
Transfer/sec:    240.00KB
"""
    parsed = run.parse_wrk(sample)
    assert parsed == {
        "requests_per_s": 3125.5,
        "p50_ms": 0.65,
        "p99_ms": 1200.0,
        "requests": 3126,
        "errors": 7,
    }
    with pytest.raises(ValueError, match="unreadable"):
        run.parse_wrk("nothing")


@pytest.mark.slow
def test_one_cell_end_to_end(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (Debian: apt-get install wrk)")
    pytest.importorskip("uvicorn")
    out = tmp_path / "server.json"
    argv = [sys.executable, str(RUN), "--seconds", "1", "--jobs", "16", "--variants", "inline"]
    subprocess.run([*argv, "--json", str(out), "--no-plot"], cwd=ROOT, check=True, timeout=50)
    doc = json.loads(out.read_text())
    run = _load_run()
    run.validate(doc)
    (row,) = doc["results"]
    assert (row["variant"], row["n"], row["rounds"]) == ("inline", 16, 1)
    assert row["requests"] > 0
    assert doc["ratios"] == []  # no anyio.to_process cell to compare with
    with pytest.raises(ValueError, match="exactly"):
        run.validate({**doc, "results": [{**row, "extra": 1}]})
