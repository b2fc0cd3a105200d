"""The benchmark suite runs, and what it writes has the promised shape. No timing is asserted."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import runtime
from runtime.bench import workloads
from runtime.bench.cpu import main_side_us, thread_cpu_ns
from runtime.bench.peers import PEERS, available_peers, select_peers
from runtime.bench.report import (
    SchemaError,
    plot,
    render_table,
    target_ratios,
    validate_document,
    write_json,
)
from runtime.bench.runner import (
    FIRST_RESULT,
    LATENCY,
    RESULT_FIELDS,
    STARTUP,
    WORKLOADS,
    Config,
    _applies,
    count_steps,
    run,
    select_workloads,
)
from runtime.cli import main as runtime_main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_doc() -> dict[str, Any]:
    """One round of every peer usable here and every workload, scaled down to a few tasks."""
    config = Config(
        workers=[2],
        peers=list(PEERS),
        workloads=list(WORKLOADS),
        special=[STARTUP, LATENCY, FIRST_RESULT],
        repeats=1,
        scale=0.02,
        latency_samples=5,
    )
    steps: list[str] = []
    doc = run(config, steps.append)
    doc["_steps"] = steps  # for the test below; removed before validation
    doc["_expected_steps"] = count_steps(config)
    return doc


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def test_workloads_compute_the_right_thing() -> None:
    assert workloads.fib(20) == 6765
    assert workloads.tiny(41) == 42
    blob = b"x" * 10
    assert workloads.payload_echo(blob) == blob
    assert workloads.zlib_compress(64) > 0
    assert len(workloads.sha256_rounds(1, kib=64)) == 64
    # The n-body energy of the classic system after 1000 steps (pyperformance's reference check).
    assert workloads.nbody(1000) == pytest.approx(-0.169087605, abs=1e-8)


@pytest.mark.timeout(120)
def test_every_peer_and_workload_completes(tiny_doc: dict[str, Any]) -> None:
    suite = tiny_doc["environment"]["suite"]
    assert suite["errors"] == []
    usable, skipped = available_peers(PEERS)
    assert set(suite["skipped_peers"]) == set(skipped)
    assert tiny_doc["_steps"]
    assert len(tiny_doc["_steps"]) == tiny_doc["_expected_steps"]
    seen = {(r["peer"], r["backend"], r["workload"]) for r in tiny_doc["results"]}
    for peer in usable:
        for workload in WORKLOADS:
            if _applies(peer, workload) is None:
                assert (peer.name, peer.backend, workload.name) in seen, (peer.key, workload.name)
        if peer.floor:
            assert {w for p, b, w in seen if (p, b) == (peer.name, peer.backend)} == {FIRST_RESULT}
        elif not peer.serial:
            assert (peer.name, peer.backend, STARTUP) in seen
            assert (peer.name, peer.backend, LATENCY) in seen
            assert (peer.name, peer.backend, FIRST_RESULT) in seen


def test_rows_fill_the_fields_that_apply(tiny_doc: dict[str, Any]) -> None:
    for row in tiny_doc["results"]:
        if row["workload"] == STARTUP:
            assert row["startup_ms"] is not None
            assert row["mem_mb_per_worker"] is not None
            assert row["p50_us"] is None
            assert row["per_task_us"] is None
        elif row["workload"] == LATENCY:
            assert row["p50_us"] is not None
            assert row["p99_us"] is not None
            assert row["p50_us"] <= row["p99_us"]
            assert row["main_cpu_us"] is not None  # Linux: /proc/self/task is there
            assert row["startup_ms"] is None
        elif row["workload"] == FIRST_RESULT:
            assert row["first_result_ms"] is not None
            assert row["first_result_ms"] == row["median_s"] * 1e3
            assert row["p50_us"] is None
            assert row["main_cpu_us"] is None
        else:
            assert row["per_task_us"] is not None
            assert row["speedup_vs_serial"] is not None
            assert row["p50_us"] is None
            assert row["startup_ms"] is None


def test_json_validates_and_round_trips(tiny_doc: dict[str, Any], tmp_path: Path) -> None:
    doc = _clean(tiny_doc)
    validate_document(doc)
    path = write_json(doc, tmp_path / "out" / "bench.json")
    loaded = json.loads(path.read_text())
    validate_document(loaded)
    assert loaded["results"] == doc["results"]
    env = loaded["environment"]
    for key in ("python", "gil_enabled", "free_threaded_build", "cpu_count", "versions", "suite"):
        assert key in env
    process_rows = [m for m in env["suite"]["startup_detail"] if m["backend"].startswith("process")]
    assert process_rows
    assert all(m["worker_uss_mb"] > 0 for m in process_rows)
    assert all(m["worker_pss_mb"] > 0 for m in process_rows)


def _broken(doc: dict[str, Any], mutate: Any) -> dict[str, Any]:
    bad = copy.deepcopy(_clean(doc))
    mutate(bad)
    return bad


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda d: d.pop("environment"), id="no-environment"),
        pytest.param(lambda d: d.update(extra=1), id="extra-top-level-key"),
        pytest.param(lambda d: d["results"][0].pop("p99_us"), id="missing-field"),
        pytest.param(lambda d: d["results"][0].update(note="x"), id="extra-field"),
        pytest.param(lambda d: d["results"][0].update(workers=0), id="zero-workers"),
        pytest.param(lambda d: d["results"][0].update(workers=True), id="bool-workers"),
        pytest.param(lambda d: d["results"][0].update(median_s="fast"), id="string-number"),
        pytest.param(lambda d: d["results"][0].update(median_s=float("nan")), id="nan"),
        pytest.param(lambda d: d["results"][0].update(min_s=1e9), id="min-above-median"),
        pytest.param(lambda d: d["results"][0].update(peer=""), id="empty-peer"),
        pytest.param(lambda d: d.update(results={}), id="results-not-list"),
    ],
)
def test_schema_check_rejects_malformed_documents(tiny_doc: dict[str, Any], mutate: Any) -> None:
    with pytest.raises(SchemaError):
        validate_document(_broken(tiny_doc, mutate))


def test_plot_is_a_png(tiny_doc: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot(_clean(tiny_doc), tmp_path / "bench.png")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_table_renders(tiny_doc: dict[str, Any]) -> None:
    rich_console = pytest.importorskip("rich.console")
    console = rich_console.Console(record=True, width=200)
    render_table(_clean(tiny_doc), console)
    text = console.export_text()
    assert "ProcessPoolExecutor" in text
    assert "µs/task" in text


def test_cli_end_to_end_with_several_worker_counts(tmp_path: Path) -> None:
    """``parallel-runtime bench`` with a scaling sweep: JSON valid, PNG written (line-plot path)."""
    json_path, png_path = tmp_path / "b.json", tmp_path / "b.png"
    argv = [
        "bench",
        "--workers",
        "1,2",
        "--peers",
        "thread,runtime-thread",
        "--workloads",
        "fib,tiny,startup,latency",
        "--repeats",
        "2",
        "--scale",
        "0.05",
        "--no-progress",
        "--json",
        str(json_path),
        "--plot",
        str(png_path),
    ]
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    # Without matplotlib the run still completes and writes JSON; the missing plot is exit 3.
    assert runtime_main(argv) == (0 if has_matplotlib else 3)
    doc = json.loads(json_path.read_text())
    validate_document(doc)
    assert {r["workers"] for r in doc["results"]} == {1, 2}
    assert {r["workload"] for r in doc["results"]} == {"fib", "tiny", STARTUP, LATENCY}
    assert doc["environment"]["suite"]["repeats"] == 2
    if has_matplotlib:
        assert png_path.read_bytes()[:8] == PNG_MAGIC


def test_cli_rejects_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert runtime_main(["bench", "--peers", "nope"]) == 2
    assert "unknown peer" in capsys.readouterr().err
    assert runtime_main(["bench", "--workloads", "nope"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_selection_helpers() -> None:
    keys = [p.key for p in select_peers(["runtime"])]
    assert keys[0] == "serial"  # the baseline always comes along
    assert set(keys[1:]) == {"runtime-subinterpreter", "runtime-thread", "runtime-process"}
    assert {p.key for p in select_peers(["process"])} >= {"process-fork", "process-spawn"}
    quick, special = select_workloads(None, quick=True)
    assert "tiny_chunked" not in {w.name for w in quick}
    assert special == [STARTUP, LATENCY, FIRST_RESULT]
    assert "floor" in {p.key for p in select_peers(None)}
    assert "floor" in {p.key for p in select_peers(["floor"])}
    assert set(RESULT_FIELDS) >= {"peer", "backend", "workload", "workers", "median_s"}


def test_target_ratios_name_the_yardsticks(tiny_doc: dict[str, Any]) -> None:
    ratios = target_ratios(_clean(tiny_doc))
    targets = {r["target"] for r in ratios}
    assert "p50 / ThreadPoolExecutor" in targets
    assert "first result / floor" in targets or not any(p.floor for p in available_peers(PEERS)[0])
    assert all(r["ratio"] > 0 for r in ratios)
    assert {r["backend"] for r in ratios} <= {"subinterpreter", "thread", "process"}


def test_main_side_cpu_excludes_the_workers() -> None:
    """A busy thread counts on the main side unless it is named as a worker."""
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        while not stop.is_set():
            workloads.fib(15)

    thread = threading.Thread(target=spin, name="bench-test-spinner")
    thread.start()
    started.wait(10)
    try:
        before = thread_cpu_ns()
        # CPU of our own meanwhile (10 ms ticks where only /proc's stat tells), and the spinner
        # holds the GIL half the time, so spend a known amount of this thread's CPU.
        mine = time.thread_time()
        while time.thread_time() - mine < 0.05:
            workloads.fib(15)
        after = thread_cpu_ns()
    finally:
        stop.set()
        thread.join(10)
    assert thread.native_id is not None
    everyone = main_side_us(before, after, set(), 1)
    without = main_side_us(before, after, {thread.native_id}, 1)
    assert everyone is not None
    assert without is not None
    assert everyone >= without > 0
    assert main_side_us(None, after, set(), 1) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/task is Linux's")
def test_thread_cpu_reads_each_threads_own_clock() -> None:
    """Nanoseconds from the thread's CPU-time clock, not 10 ms ticks: the same clock as thread_time_ns."""
    me = threading.get_native_id()
    first = thread_cpu_ns()
    own = time.thread_time_ns()
    second = thread_cpu_ns()
    assert first is not None
    assert second is not None
    # Ticks would round down to 10 ms and fall behind the thread's own clock.
    assert first[me] <= own <= second[me]


def _first_result_cold(out: Path, *options: str) -> tuple[dict[str, Any], str]:
    """Run benchmarks/first_result_cold.py for 1 round of 2 workers; its JSON and its stdout."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "first_result_cold.py"
    done = subprocess.run(
        [sys.executable, str(script), "1", "2", *options, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def test_cold_first_result_script_reports_every_peer(tmp_path: Path) -> None:
    """benchmarks/first_result_cold.py: fresh processes per try, medians and ratios in JSON."""
    doc, stdout = _first_result_cold(tmp_path / "cold.json")
    assert doc["workers"] == 2
    assert doc["rounds"] == 1
    assert doc["busy"] is False
    assert doc["loaded"] is False
    peers = doc["peers"]
    assert "runtime.Executor[thread]" in peers
    if sys.version_info >= (3, 13) and runtime.capabilities().subinterpreters:
        assert {"floor", "runtime.Executor[subinterpreter]"} <= set(peers)
        assert "runtime.Executor[subinterpreter] / floor" in doc["ratios"]
    for row in peers.values():
        assert row["n"] == 1
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["max_ms"]
    assert "first result in a fresh process" in stdout


def test_cold_first_result_script_beside_a_busy_thread(tmp_path: Path) -> None:
    """--busy: a spinning thread in every try, and the row with the switch interval left alone;
    --loaded: a second executor, in a process that built one before."""
    out = tmp_path / "busy.json"
    doc, stdout = _first_result_cold(out, "--busy", "--loaded")
    assert doc["busy"] is True
    assert doc["loaded"] is True
    assert doc["command"].endswith(f"--busy --loaded --json {os.path.relpath(out)}")
    assert "that built one before, beside a busy thread" in stdout
    if sys.version_info >= (3, 13) and runtime.capabilities().subinterpreters:
        untuned = "runtime.Executor[subinterpreter, interval left alone]"
        assert untuned in doc["peers"]
        assert f"runtime.Executor[subinterpreter] / {untuned}" in doc["ratios"]


@pytest.mark.skipif(
    sys.version_info < (3, 13) or not runtime.capabilities().subinterpreters,
    reason="the A/B times subinterpreter executors and the floor",
)
def test_cold_first_result_script_compares_two_builds(tmp_path: Path) -> None:
    """--pythons A,B: the floor and our subinterpreter executor under each interpreter, B / A."""
    both = f"{sys.executable},{sys.executable}"
    out = tmp_path / "ab.json"
    doc, stdout = _first_result_cold(out, "--pythons", both)
    assert doc["pythons"] == [sys.executable, sys.executable]
    a, b = (f"runtime.Executor[subinterpreter] {label}" for label in "AB")
    assert set(doc["peers"]) == {"floor", a, b}
    assert all(row["n"] == 1 for row in doc["peers"].values())
    ratio = doc["peers"][b]["median_ms"] / doc["peers"][a]["median_ms"]
    assert doc["ratios"]["B / A"] == pytest.approx(ratio)
    assert f"{b} / floor" in doc["ratios"]
    assert doc["command"].endswith(f"--pythons {both} --json {os.path.relpath(out)}")
    assert f"A: {sys.executable}" in stdout


def test_aio_main_cpu_script_compares_both_peers() -> None:
    """benchmarks/aio_main_cpu.py runs both offloading peers on one loop and prints the ratio."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "aio_main_cpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "2", "4", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "anyio.to_process.run_sync  main CPU" in done.stdout
    assert "runtime.aio.run_sync       main CPU" in done.stdout
    assert "main CPU per call, runtime / anyio.to_process:" in done.stdout
