"""runtime.bench.bench_map end to end on small sizes: rows, ratios and JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from runtime.bench.bench_map import rss_bytes

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.timeout(240)


def test_rss_is_measured() -> None:
    before = rss_bytes()
    block = bytearray(64 << 20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert rss_bytes() - before > 32 << 20
    del block


def test_bench_map_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "map.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.bench.bench_map",
            "--n",
            "40000",
            "--small-n",
            "20000",
            "--peer-n",
            "300",
            "--repeats",
            "1",
            "--buffersize",
            "4",
            "--chunksize",
            "256",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    variants = {(row["variant"], row["n"]) for row in doc["rows"]}
    assert {("runtime-lazy", 40000), ("runtime-lazy", 20000), ("runtime-eager", 20000)} <= variants
    if sys.version_info >= (3, 14):
        assert ("ProcessPoolExecutor", 20000) in variants
        assert ("InterpreterPoolExecutor", 300) in variants
    for row in doc["rows"]:
        assert row["us_per_item"] > 0
    assert doc["ratios"]["lazy_vs_eager_us"] > 0
    assert "lazy vs eager per item" in proc.stdout
