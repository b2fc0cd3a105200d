"""What comes out: a rich table, the JSON document (and its schema check), a PNG plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .runner import FIRST_RESULT as FIRST_W
from .runner import LATENCY as LATENCY_W
from .runner import RESULT_FIELDS
from .runner import STARTUP as STARTUP_W

if TYPE_CHECKING:
    from collections.abc import Sequence

TIMES = "\u00d7"  # the multiplication sign of ratios
DASH = "\u2013"  # an empty cell

__all__ = [
    "SchemaError",
    "plot",
    "reference_peer",
    "render_table",
    "target_ratios",
    "validate_document",
    "write_json",
]

# --- schema ---------------------------------------------------------------------------------------


class SchemaError(ValueError):
    """The document does not have the stable shape ``{"environment": {...}, "results": [...]}``."""


_IDENTITY_FIELDS = ("peer", "backend", "workload", "workers")
_NUMBER_FIELDS = tuple(f for f in RESULT_FIELDS if f not in _IDENTITY_FIELDS)


def validate_document(doc: Any) -> None:
    """Raise :class:`SchemaError` unless ``doc`` matches the stable schema exactly.

    Top level: exactly ``environment`` (an object) and ``results`` (a list). Each result: exactly
    the keys of :data:`runtime.bench.runner.RESULT_FIELDS`; ``peer``/``backend``/``workload`` are
    non-empty strings, ``workers`` a positive integer, every other field a finite non-negative
    number or null, ``min_s <= median_s <= max_s`` when present.
    """
    if not isinstance(doc, dict):
        raise SchemaError(f"document must be an object, not {type(doc).__name__}")
    if set(doc) != {"environment", "results"}:
        raise SchemaError(f"top-level keys must be environment and results, got {sorted(doc)}")
    env = doc["environment"]
    if not isinstance(env, dict):
        raise SchemaError("environment must be an object")
    for key in ("python", "gil_enabled", "free_threaded_build", "cpu_count"):
        if key not in env:
            raise SchemaError(f"environment lacks {key!r}")
    results = doc["results"]
    if not isinstance(results, list):
        raise SchemaError("results must be a list")
    for index, row in enumerate(results):
        where = f"results[{index}]"
        if not isinstance(row, dict):
            raise SchemaError(f"{where} must be an object")
        if set(row) != set(RESULT_FIELDS):
            missing = sorted(set(RESULT_FIELDS) - set(row))
            extra = sorted(set(row) - set(RESULT_FIELDS))
            raise SchemaError(f"{where}: missing {missing}, unexpected {extra}")
        for key in ("peer", "backend", "workload"):
            if not isinstance(row[key], str) or not row[key]:
                raise SchemaError(f"{where}.{key} must be a non-empty string")
        workers = row["workers"]
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise SchemaError(f"{where}.workers must be a positive integer")
        for key in _NUMBER_FIELDS:
            value = row[key]
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SchemaError(f"{where}.{key} must be a number or null")
            if not math.isfinite(value) or value < 0:
                raise SchemaError(f"{where}.{key} must be finite and >= 0, got {value}")
        if row["median_s"] is not None:
            if row["min_s"] is None or row["max_s"] is None:
                raise SchemaError(f"{where}: median_s without min_s/max_s")
            if not row["min_s"] <= row["median_s"] <= row["max_s"]:
                raise SchemaError(f"{where}: min_s <= median_s <= max_s does not hold")


def write_json(doc: dict[str, Any], path: str | Path) -> Path:
    validate_document(doc)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(doc, indent=2) + "\n")
    return target


# --- table ----------------------------------------------------------------------------------------

# (workload, field, header, higher_is_better, format)
_COLUMNS: tuple[tuple[str, str, str, bool, str], ...] = (
    ("fib", "speedup_vs_serial", f"fib\n{TIMES}serial", True, "{:.2f}"),
    ("nbody", "speedup_vs_serial", f"nbody\n{TIMES}serial", True, "{:.2f}"),
    ("zlib", "speedup_vs_serial", f"zlib\n{TIMES}serial", True, "{:.2f}"),
    ("sha256", "speedup_vs_serial", f"sha256\n{TIMES}serial", True, "{:.2f}"),
    ("tiny", "per_task_us", "tiny map\nµs/task", False, "{:.1f}"),
    ("tiny_chunked", "per_task_us", "tiny c=256\nµs/task", False, "{:.2f}"),
    ("payload", "per_task_us", "1 MB i/o\nµs/task", False, "{:.0f}"),
    ("latency", "p50_us", "latency\np50 µs", False, "{:.0f}"),
    ("latency", "p99_us", "latency\np99 µs", False, "{:.0f}"),
    ("latency", "main_cpu_us", "main CPU\nµs/call", False, "{:.0f}"),
    ("startup", "startup_ms", "start\nms", False, "{:.1f}"),
    ("first_result", "first_result_ms", "first\nresult ms", False, "{:.1f}"),
    ("startup", "mem_mb_per_worker", "memory\nMB/worker", False, "{:.1f}"),
)


def reference_peer(doc: dict[str, Any]) -> tuple[str, str] | None:
    """The ratios' yardstick: ``ProcessPoolExecutor`` with this platform's default start method."""
    method = doc["environment"].get("default_start_method") or "fork"
    pairs = {(r["peer"], r["backend"]) for r in doc["results"]}
    for backend in (f"process/{method}", "process/forkserver", "process/spawn", "process/fork"):
        if ("ProcessPoolExecutor", backend) in pairs:
            return "ProcessPoolExecutor", backend
    return None


def _fmt(fmt: str, value: float) -> str:
    if value >= 10_000 and fmt.endswith(".1f}"):
        fmt = "{:.0f}"
    elif value < 1 and fmt.endswith(".1f}"):
        fmt = "{:.2f}"
    return fmt.format(value)


def _ratio(ratio: float) -> str:
    if ratio >= 10:
        return f"{ratio:.0f}{TIMES}"
    if ratio >= 0.1:
        return f"{ratio:.2f}{TIMES}"
    return f"{ratio:.3f}{TIMES}"


def render_table(doc: dict[str, Any], console: Any = None) -> None:
    """Print one table per worker count: values, and ratios against ProcessPoolExecutor."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:  # piped into a file or README: do not squeeze into 80 columns
            console = Console(width=240)
    results = doc["results"]
    ref = reference_peer(doc)
    index = {(r["peer"], r["backend"], r["workload"], r["workers"]): r for r in results}
    present = {(r["workload"], f) for r in results for f in RESULT_FIELDS if r[f] is not None}
    columns = [c for c in _COLUMNS if (c[0], c[1]) in present]
    peers: list[tuple[str, str]] = []
    for r in results:
        if (r["peer"], r["backend"]) not in peers:
            peers.append((r["peer"], r["backend"]))

    env = doc["environment"]
    for workers in sorted({r["workers"] for r in results}):
        if (
            workers == 1
            and len({r["workers"] for r in results}) > 1
            and all(r["peer"] == "serial" for r in results if r["workers"] == 1)
        ):
            continue  # only the baseline ran at 1 worker; it shows up in every other table
        title = f"{workers} worker{'s' if workers > 1 else ''} · Python {env.get('python')} · {env.get('usable_cpus') or env.get('cpu_count')} CPUs"
        caption = f"median of {env.get('suite', {}).get('repeats', '?')} repeats; " + (
            f"small figures: ratio to {ref[0]} ({ref[1]}), green = better"
            if ref
            else "no ProcessPoolExecutor in this run: no ratios"
        )
        table = Table(title=title, caption=caption, header_style="bold", show_lines=False)
        table.add_column("peer", no_wrap=True)
        table.add_column("backend", no_wrap=True)
        for _, _, header, _, _ in columns:
            table.add_column(header, justify="right")
        for peer, backend in peers:
            cells: list[str] = []
            any_value = False
            for workload, fld, _, higher_better, fmt in columns:
                w = 1 if peer == "serial" else workers
                row = index.get((peer, backend, workload, w))
                value = row[fld] if row else None
                if value is None:
                    cells.append(f"[dim]{DASH}[/]")
                    continue
                any_value = True
                text = _fmt(fmt, value)
                ref_row = index.get((ref[0], ref[1], workload, workers)) if ref else None
                ref_value = ref_row[fld] if ref_row else None
                if ref_value and peer != "serial" and (peer, backend) != ref and value > 0:
                    ratio = value / ref_value
                    better = ratio > 1 if higher_better else ratio < 1
                    color = "green" if better else "red"
                    text += f" [{color}]{_ratio(ratio)}[/]"
                cells.append(text)
            if not any_value:
                continue
            style = (
                "bold cyan"
                if peer == "runtime.Executor"
                else ("yellow" if (peer, backend) == ref else None)
            )
            table.add_row(peer, backend, *cells, style=style)
        console.print(table)

    targets = target_ratios(doc)
    if targets:
        lines = ["runtime.Executor against the per-call yardsticks (below 1 is better):"]
        for t in targets:
            lines.append(
                f"  {t['backend']:<15} x{t['workers']:<3} {t['target']:<42} {t['ratio']:.2f}{TIMES}"
            )
        console.print("\n".join(lines), markup=False, highlight=False)

    suite = env.get("suite", {})
    for key, reason in suite.get("skipped_peers", {}).items():
        console.print(f"[dim]skipped {key}: {reason}[/]")
    for err in suite.get("errors", []):
        console.print(
            f"[red]failed {err['peer']} ({err['backend']}, {err['workers']} workers): {err['error']}[/]"
        )


# --- per-call targets ------------------------------------------------------------------------------

# (label, workload, field, peer, backend prefix of the yardstick); ratios below 1 are better.
_TARGETS: tuple[tuple[str, str, str, str, str], ...] = (
    ("p50 / ThreadPoolExecutor", LATENCY_W, "p50_us", "ThreadPoolExecutor", "thread"),
    ("p50 / InterpreterPoolExecutor", LATENCY_W, "p50_us", "InterpreterPoolExecutor", ""),
    ("p99 / InterpreterPoolExecutor", LATENCY_W, "p99_us", "InterpreterPoolExecutor", ""),
    ("main CPU / anyio.to_process", LATENCY_W, "main_cpu_us", "anyio.to_process", ""),
    ("first result / floor", FIRST_W, "first_result_ms", "floor", ""),
    (
        "first result / InterpreterPoolExecutor",
        FIRST_W,
        "first_result_ms",
        "InterpreterPoolExecutor",
        "",
    ),
    (
        "MB per worker / InterpreterPoolExecutor",
        STARTUP_W,
        "mem_mb_per_worker",
        "InterpreterPoolExecutor",
        "",
    ),
)


def target_ratios(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """``runtime.Executor``'s figures over the yardsticks the per-call targets name, per worker count.

    One entry per (runtime backend, workers, target) that both sides of the ratio were measured
    for: ``{"backend", "workers", "target", "ratio"}``. Below 1 is better.
    """
    rows = doc["results"]
    out: list[dict[str, Any]] = []
    for label, workload, fld, peer, prefix in _TARGETS:
        for mine in rows:
            if mine["peer"] != "runtime.Executor" or mine["workload"] != workload:
                continue
            ref = next(
                (
                    r
                    for r in rows
                    if r["peer"] == peer
                    and r["backend"].startswith(prefix)
                    and r["workload"] == workload
                    and r["workers"] == mine["workers"]
                ),
                None,
            )
            if ref is None or not ref[fld] or mine[fld] is None:
                continue
            out.append(
                {
                    "backend": mine["backend"],
                    "workers": mine["workers"],
                    "target": label,
                    "ratio": round(mine[fld] / ref[fld], 3),
                }
            )
    return out


# --- plot -----------------------------------------------------------------------------------------


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (``pip install 'parallel-runtime[bench]'``)."""


def _speedup_workload(results: Sequence[dict[str, Any]]) -> list[str]:
    present = {r["workload"] for r in results if r["speedup_vs_serial"] is not None}
    return [w for w in ("fib", "nbody", "zlib", "sha256") if w in present]


def plot(doc: dict[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Write a PNG: speedup vs serial (CPU workloads) and tiny-task overhead, per peer.

    With one worker count it draws grouped bars; with several, one line per peer over workers.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            "the plot needs matplotlib: pip install 'parallel-runtime[bench]' (or matplotlib)"
        ) from exc

    results = [r for r in doc["results"] if r["peer"] != "serial"]
    labels: list[str] = []
    for r in results:
        label = f"{r['peer']} [{r['backend']}]"
        if label not in labels:
            labels.append(label)
    worker_counts = sorted({r["workers"] for r in results})
    speed_workloads = _speedup_workload(results)
    overhead_workload = next(
        (w for w in ("tiny", "tiny_chunked") if any(r["workload"] == w for r in results)), None
    )

    def value(label: str, workload: str, workers: int, fld: str) -> float | None:
        for r in results:
            if (
                f"{r['peer']} [{r['backend']}]" == label
                and r["workload"] == workload
                and r["workers"] == workers
            ):
                v = r[fld]
                return float(v) if v is not None else None
        return None

    fig, (ax_speed, ax_over) = plt.subplots(1, 2, figsize=(15, 7.5))
    cmap = plt.get_cmap("tab20")
    colors = {label: cmap(i % 20) for i, label in enumerate(labels)}

    if len(worker_counts) == 1:
        workers = worker_counts[0]
        width = 0.8 / max(1, len(labels))
        for i, label in enumerate(labels):
            xs, ys = [], []
            for j, w in enumerate(speed_workloads):
                v = value(label, w, workers, "speedup_vs_serial")
                if v is not None:
                    xs.append(j + (i - len(labels) / 2 + 0.5) * width)
                    ys.append(v)
            ax_speed.bar(xs, ys, width, label=label, color=colors[label])
        ax_speed.set_xticks(range(len(speed_workloads)), speed_workloads)
        ax_speed.axhline(
            workers, color="grey", linestyle=":", linewidth=1, label=f"ideal ({workers}{TIMES})"
        )
        ax_speed.set_title(f"Speedup vs serial, {workers} workers (higher is better)")
        names, vals, cols = [], [], []
        for label in labels:
            v = (
                value(label, overhead_workload, workers, "per_task_us")
                if overhead_workload
                else None
            )
            if v is not None:
                names.append(label)
                vals.append(v)
                cols.append(colors[label])
        bars = ax_over.barh(names, vals, color=cols)
        ax_over.bar_label(bars, labels=[f"{v:.3g} µs" for v in vals], fontsize=7, padding=2)
        ax_over.invert_yaxis()
        ax_over.set_xscale("log")
        ax_over.set_xlabel("µs per task (log)")
        ax_over.set_title(
            f"Per-task overhead, {overhead_workload} map, {workers} workers (lower is better)"
        )
    else:
        main = speed_workloads[0] if speed_workloads else None
        for label in labels:
            if main:
                pts = [(w, value(label, main, w, "speedup_vs_serial")) for w in worker_counts]
                pts = [(w, v) for w, v in pts if v is not None]
                if pts:
                    ax_speed.plot(
                        *zip(*pts, strict=True), marker="o", label=label, color=colors[label]
                    )
            if overhead_workload:
                pts = [
                    (w, value(label, overhead_workload, w, "per_task_us")) for w in worker_counts
                ]
                pts = [(w, v) for w, v in pts if v is not None]
                if pts:
                    ax_over.plot(
                        *zip(*pts, strict=True), marker="o", label=label, color=colors[label]
                    )
        ax_speed.plot(worker_counts, worker_counts, color="grey", linestyle=":", label="ideal")
        ax_speed.set_xlabel("workers")
        ax_speed.set_ylabel(f"speedup vs serial ({main})")
        ax_speed.set_title(f"Scaling: {main} (higher is better)")
        ax_over.set_xlabel("workers")
        ax_over.set_yscale("log")
        ax_over.set_ylabel("µs per task (log)")
        ax_over.set_title(f"Per-task overhead: {overhead_workload} map (lower is better)")
        for ax in (ax_speed, ax_over):
            ax.set_xscale("log", base=2)
            ax.set_xticks(worker_counts, [str(w) for w in worker_counts])
    # One legend under both panels, so no bar or line hides behind it.
    handles, names_ = ax_speed.get_legend_handles_labels()
    fig.legend(handles, names_, loc="lower center", ncol=4, fontsize=8, frameon=False)
    for ax in (ax_speed, ax_over):
        ax.grid(True, which="both", alpha=0.3)

    env = doc["environment"]
    fig.suptitle(
        title
        or f"parallel-runtime bench · Python {env.get('python')} · "
        f"{env.get('usable_cpus') or env.get('cpu_count')} CPUs · {env.get('cpu_model') or env.get('machine')}",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110, format="png")
    plt.close(fig)
    return target
