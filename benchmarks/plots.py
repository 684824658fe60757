"""PNG plots of an end-to-end benchmark run (matplotlib, from the `bench` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONCURRENCY = (1, 16, 64)
COLORS = {
    "embedded": "#1b7837",
    "remote": "#c51b7d",
    "nobatch": "#7fbc41",
    "standin": "#8e0152",
    "flask": "#e08214",
    "fastapi": "#2166ac",
    "raw": "#777777",
}
LABELS = {
    "embedded": "embedded (in-process, batching)",
    "remote": "remote (HTTP to Flask/PyTorch stand-in)",
    "nobatch": "embedded, batching off",
    "standin": "stand-in called directly",
    "flask": "Flask + gunicorn, ONNX Runtime",
    "fastapi": "bare FastAPI route",
    "raw": "raw ASGI (the ceiling)",
}


def _percentiles(runs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Median over rounds of each latency percentile: (percentiles, milliseconds)."""
    points = sorted(runs[0]["latency_us"]["percentiles"], key=float)
    ms = []
    for p in points:
        values = sorted(r["latency_us"]["percentiles"][p] for r in runs)
        ms.append(values[len(values) // 2] / 1000)
    return [float(p) for p in points], ms


def write_plots(result: dict[str, Any], out: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    summary = result["summary"]
    written = []

    # 1. latency distributions at c=64 (percentile curves)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, scenario, variants in (
        (axes[0], "test-responses", ("embedded", "nobatch", "remote")),
        (axes[1], "predict", ("embedded", "flask", "fastapi", "raw", "standin")),
    ):
        for variant in variants:
            key = f"{scenario}/{variant}/c64"
            if key not in runs:
                continue
            points, ms = _percentiles(runs[key])
            ax.plot(points, ms, marker="o", ms=3, color=COLORS[variant], label=LABELS[variant])
        ax.set_yscale("log")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, log)")
        title = "POST /test-responses" if scenario == "test-responses" else "POST /predict"
        ax.set_title(f"{title}, 64 concurrent connections")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{prefix}-latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # 2. throughput vs concurrency
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, scenario, variants in (
        (axes[0], "test-responses", ("embedded", "nobatch", "remote")),
        (axes[1], "predict", ("embedded", "flask", "fastapi", "raw", "standin")),
    ):
        for variant in variants:
            ys = [
                summary.get(f"{scenario}/{variant}/c{c}", {}).get("throughput_per_s", 0)
                for c in CONCURRENCY
            ]
            ax.plot(CONCURRENCY, ys, marker="o", color=COLORS[variant], label=LABELS[variant])
        ax.set_xscale("log", base=2)
        ax.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("requests/s")
        title = (
            "POST /test-responses (MariaDB)"
            if scenario == "test-responses"
            else ("POST /predict vs the comparison servers (no database)")
        )
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{prefix}-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # 3. embedded vs remote: throughput, p50, p99 side by side per concurrency
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    width = 0.38
    for ax, field, label in (
        (axes[0], "throughput_per_s", "requests/s"),
        (axes[1], "p50_ms", "p50 latency (ms)"),
        (axes[2], "p99_ms", "p99 latency (ms)"),
    ):
        for offset, variant in ((-width / 2, "embedded"), (width / 2, "remote")):
            ys = [
                summary.get(f"test-responses/{variant}/c{c}", {}).get(field, 0) for c in CONCURRENCY
            ]
            xs = [i + offset for i in range(len(CONCURRENCY))]
            ax.bar(xs, ys, width, color=COLORS[variant], label=LABELS[variant])
        ax.set_xticks(range(len(CONCURRENCY)), [f"c={c}" for c in CONCURRENCY])
        ax.set_ylabel(label)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9)
    fig.suptitle("POST /test-responses: embedded vs remote inference")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    path = out / f"{prefix}-embedded-vs-remote.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
