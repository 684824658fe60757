"""What the engine's batch observers cost a lone request: metrics per model version, and a
shadow model, against a bare engine.

    python benchmarks/observers.py [--requests 5000] [--rounds 7]

The bundled model in a `ModelEngine`, measured as the sandbox measures it (so its batches
run inline on the event loop, as in a worker), with the metrics files of a multi-worker
service (`PROMETHEUS_MULTIPROC_DIR`). Each round runs `--requests` sequential predictions
(each a batch of one) on a bare engine, on one with `server.metrics.observe_engine`, and on
one that also scores a shadow (the same network under another version), in an order that
rotates every round; it reports the CPU time per prediction (`time.process_time`, all of
it on this thread) and the median over rounds of each variant's difference from the bare
engine in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before prometheus_client is imported: the metrics of a multi-worker service are files.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="hollang-observers-"))

from batching.adaptive import BatchSettings  # noqa: E402
from model.engine import LoadedModel, ModelEngine, open_session  # noqa: E402
from model.modelfile import ModelFile, ModelMetadata  # noqa: E402
from model.sandbox import SandboxLimits, validate_blocking  # noqa: E402
from model.shadow import ShadowScorer  # noqa: E402
from server import metrics  # noqa: E402

BUNDLED = ROOT / "model" / "bundled" / "default.onnx"
VARIANTS = ("bare", "metrics", "metrics+shadow")


def measured(data: bytes) -> LoadedModel:
    """A session with the costs the sandbox measured, as a worker installs it."""
    validated = validate_blocking(data, None, SandboxLimits())
    return replace(open_session(ModelFile.from_bytes(data)), batch_seconds=validated.batch_seconds)


def renamed(data: bytes, version: str) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    labels = ModelFile.from_bytes(data).metadata.labels
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, ModelMetadata(version, labels).to_props())
    return proto.SerializeToString()


async def cpu_per_prediction(
    variant: str, active: LoadedModel, shadow: LoadedModel, n: int
) -> float:
    settings = BatchSettings()
    engine = ModelEngine(settings)
    if variant != "bare":
        metrics.observe_engine(engine)
    engine.swap(active)
    if variant == "metrics+shadow":
        engine.set_shadow(
            ShadowScorer(
                shadow,
                max_inline_seconds=settings.max_inline_seconds,
                max_batch_size=settings.max_batch_size,
                observer=metrics.ShadowMetrics(shadow.version),
            )
        )
    rows = [[i % 4, (i // 4) % 4, (i // 16) % 4, (i // 64) % 4] for i in range(256)]
    try:
        for row in rows:  # warm-up
            await engine.predict(row)
        started = time.process_time()
        for i in range(n):
            await engine.predict(rows[i % 256])
        if engine.shadow is not None:
            engine.shadow.flush()  # its last rows, so every variant pays for all it does
        await asyncio.sleep(0)  # the last batch's observer
        metrics.fold_version_metrics()
        return (time.process_time() - started) / n * 1e6
    finally:
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    data = BUNDLED.read_bytes()
    active, shadow = measured(data), measured(renamed(data, "observers-shadow"))
    runs: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for round_index in range(args.rounds):
        shift = round_index % len(VARIANTS)
        for variant in VARIANTS[shift:] + VARIANTS[:shift]:
            runs[variant].append(
                asyncio.run(cpu_per_prediction(variant, active, shadow, args.requests))
            )
    print(f"CPU µs per lone prediction, {args.rounds} rounds of {args.requests}:")
    for variant in VARIANTS:
        values = runs[variant]
        line = f"  {variant:<15} median {statistics.median(values):6.1f}"
        if variant != "bare":
            paired = [a - b for a, b in zip(values, runs["bare"], strict=True)]
            line += f"   +{statistics.median(paired):5.1f} over bare (median of paired rounds)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
