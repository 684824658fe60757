"""The in-process inference engine: one ONNX Runtime session per model, behind a batcher.

`load_model` turns a checked `ModelFile` into a `LoadedModel` only after the whole
validation path has passed (labels known to the catalogue, a smoke batch over every possible
input). `ModelEngine` serves the active model and swaps atomically: a swap installs a new
batcher for the new model, and the old one finishes what it had queued, so a request
finishes on the model it started with and none fails because of the swap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import onnxruntime as ort

from model.batcher import BatchSettings, BatchStats, MicroBatcher
from model.modelfile import INPUT_NAME, OUTPUT_NAME, ModelFile, ModelFileError, check_signature
from model.scoring import AXES, all_score_inputs


def session_options() -> ort.SessionOptions:
    """Tuned for a tiny MLP: one thread (parallelism costs more than it buys), full graph
    optimisation, no spinning threads stealing one of our two cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


@dataclass(frozen=True)
class LoadedModel:
    """A validated model file with its session, ready to run."""

    file: ModelFile
    session: ort.InferenceSession = field(repr=False)
    loaded_at: float
    # Measured at load (best of a few runs): seconds for one row, and for each further row.
    single_row_seconds: float = float("inf")
    per_row_seconds: float = float("inf")

    @property
    def version(self) -> str:
        return self.file.metadata.model_version

    @property
    def labels(self) -> tuple[str, ...]:
        return self.file.metadata.labels

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 [n, 4] batch; called from the executor thread or inline."""
        result: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return result

    def rows_within(self, seconds: float, limit: int) -> int:
        """The largest batch (at most `limit`) expected to run in `seconds`; 0 if none."""
        if seconds <= 0 or self.single_row_seconds > seconds:
            return 0
        if self.per_row_seconds <= 0:
            return limit
        return min(limit, 1 + int((seconds - self.single_row_seconds) / self.per_row_seconds))


def load_model(file: ModelFile, known_labels: Collection[str] | None = None) -> LoadedModel:
    """Validate everything before anyone can be served by this model.

    Raises `ModelFileError` with the reason: labels unknown to the catalogue, a graph whose
    shapes do not fit, or a smoke batch (all 256 possible inputs) that fails or is not finite.
    """
    if known_labels is not None:
        unknown = [label for label in file.metadata.labels if label not in known_labels]
        if unknown:
            raise ModelFileError(
                f"{len(unknown)} label(s) are not hobbies of the active catalogue: "
                + ", ".join(repr(label) for label in unknown[:3])
            )
    try:
        session = ort.InferenceSession(
            file.data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelFileError(f"not a loadable ONNX model: {exc}") from exc
    check_signature(session, len(file.metadata.labels))
    model = LoadedModel(file=file, session=session, loaded_at=time.time())
    smoke = all_score_inputs()
    try:
        logits = model.run(smoke)
    except Exception as exc:
        raise ModelFileError(f"smoke batch failed: {exc}") from exc
    if logits.shape != (len(smoke), len(file.metadata.labels)):
        raise ModelFileError(f"smoke batch returned shape {logits.shape}")
    if not np.isfinite(logits).all():
        raise ModelFileError("smoke batch returned non-finite logits")
    single = _best_time(model.run, smoke[:1])
    whole = _best_time(model.run, smoke)
    return replace(
        model,
        single_row_seconds=single,
        per_row_seconds=max(0.0, (whole - single) / (len(smoke) - 1)),
    )


def _best_time(
    run: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, repeats: int = 5
) -> float:
    """The fastest of a few runs: the model's own cost, without the noise of a busy machine.
    A slow model (10 ms) is timed once: it will never run inline, and loading stays quick."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run(batch)
        best = min(best, time.perf_counter() - started)
        if best > 0.01:
            break
    return best


@dataclass(frozen=True)
class Prediction:
    """One caller's answer, with the model that produced it."""

    logits: np.ndarray
    model: LoadedModel

    @property
    def ranking(self) -> list[int]:
        """Output indexes, best first; ties keep label order (stable sort)."""
        return [int(i) for i in np.argsort(-self.logits, kind="stable")]

    def top(self, count: int) -> list[str]:
        return [self.model.labels[i] for i in self.ranking[:count]]


class NoModelLoaded(RuntimeError):
    """`predict` was called before any model was installed."""


class ModelEngine:
    """Serves the active model through a micro-batcher; swaps without failing a request."""

    def __init__(self, settings: BatchSettings | None = None) -> None:
        self.settings = settings or BatchSettings()
        self.stats = BatchStats()  # shared by every batcher, so counters survive swaps
        # One inference thread: batches run one after another, never two at once.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._active: tuple[LoadedModel, MicroBatcher] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def model(self) -> LoadedModel | None:
        return self._active[0] if self._active else None

    @property
    def queue_depth(self) -> int:
        return self._active[1].queue_depth if self._active else 0

    async def predict(self, scores: Sequence[float]) -> Prediction:
        """Run the active model on one input row, batched with concurrent callers."""
        active = self._active
        if active is None:
            raise NoModelLoaded("no model is loaded")
        model, batcher = active
        row = np.asarray(scores, dtype=np.float32)
        if row.shape != (len(AXES),):
            raise ValueError(f"expected {len(AXES)} scores, got shape {row.shape}")
        logits = await batcher.submit(row)
        return Prediction(logits=logits, model=model)

    def swap(self, model: LoadedModel) -> LoadedModel | None:
        """Install `model` atomically; the previous batcher drains in the background.

        Must be called on the event loop's thread (the batchers live there).
        """
        previous = self._active
        inline_rows = model.rows_within(
            self.settings.max_inline_seconds, self.settings.max_batch_size
        )
        self._active = (
            model,
            MicroBatcher(model.run, self.settings, self.executor, self.stats, inline_rows),
        )
        if previous is not None:
            task = asyncio.get_running_loop().create_task(previous[1].close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return previous[0]
        return None

    async def close(self) -> None:
        """Finish every queued request, then release the inference thread."""
        if self._active is not None:
            await self._active[1].close()
        if self._retiring:
            await asyncio.gather(*self._retiring)
        self.executor.shutdown(wait=True)
