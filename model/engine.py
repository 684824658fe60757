"""The in-process inference engine: one ONNX Runtime session per model, behind a batcher.

`load_model` turns a checked `ModelFile` into a `LoadedModel` only after the whole
validation path has passed (labels known to the catalogue, every batch size up to the
largest the batcher will ask for, over every possible input; see `check_batches`).
`ModelEngine` serves the active model and swaps atomically: a swap installs a new
batcher for the new model, and the old one finishes what it had queued, so a request
finishes on the model it started with and none fails because of the swap.

Beside the active model the engine may hold a shadow (`model.shadow.ShadowScorer`): each
batch of the active model is handed to it once the batch's callers have their answers.
With no shadow set that costs one attribute check per batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np
import onnxruntime as ort

from batching.adaptive import BatchSettings, BatchStats
from model.batcher import MicroBatcher
from model.modelfile import (
    INPUT_NAME,
    OUTPUT_NAME,
    ModelFile,
    ModelFileError,
    check_signature,
    parse_model,
)
from model.scoring import AXES, all_score_inputs

if TYPE_CHECKING:
    from model.shadow import ShadowScorer


def session_options() -> ort.SessionOptions:
    """Tuned for a tiny MLP: one thread (parallelism costs more than it buys), full graph
    optimisation, no spinning threads stealing one of our two cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Only ONNX protobuf, the format `ModelFile` parsed and checked; never ORT's own format.
    options.add_session_config_entry("session.load_model_format", "ONNX")
    options.log_severity_level = 3
    return options


@dataclass(frozen=True)
class LoadedModel:
    """A validated model file with its session, ready to run."""

    file: ModelFile
    session: ort.InferenceSession = field(repr=False)
    loaded_at: float
    # Measured at validation (best of a few runs): seconds for a batch of 1, 2, ... rows.
    batch_seconds: tuple[float, ...] = ()

    @property
    def version(self) -> str:
        return self.file.metadata.model_version

    @property
    def labels(self) -> tuple[str, ...]:
        return self.file.metadata.labels

    @property
    def single_row_seconds(self) -> float:
        return self.batch_seconds[0] if self.batch_seconds else float("inf")

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a float32 [n, 4] batch; called from the executor thread or inline."""
        result: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        return result

    def rows_within(self, seconds: float, limit: int) -> int:
        """The largest batch size n (at most `limit`) such that every size up to n was
        measured within `seconds`; 0 if none.

        Every size, not an estimate from two of them: a model can be fast at 1 and 256
        rows and slow at 7, and a batch of 7 on the event loop would freeze it."""
        rows = 0
        if seconds <= 0:
            return 0
        for size, measured in enumerate(self.batch_seconds[:limit], start=1):
            if measured > seconds:
                break
            rows = size
        return rows


@dataclass(frozen=True)
class BatchCheck:
    """What running every batch size showed: the cost of each size, and the answers."""

    batch_seconds: tuple[float, ...]
    logits: np.ndarray = field(repr=False)  # [256, labels]: each input as a batch of one

    def top(self, count: int = 3) -> np.ndarray:
        """Output indexes of each input's best `count`, best first, ties in label order (as
        `Prediction.ranking` orders them)."""
        ranked: np.ndarray = np.argsort(-self.logits, axis=1, kind="stable")[:, :count]
        return ranked


def check_batches(
    run: Callable[[np.ndarray], np.ndarray],
    label_count: int,
    max_batch_size: int,
    max_batch_seconds: float = float("inf"),
) -> BatchCheck:
    """Run every batch size from 1 to `max_batch_size` over all 256 possible inputs.

    The batcher will ask for any of those sizes, so each must give finite logits, one row
    per input, and for every row the same answer as that input alone. A batch slower than
    `max_batch_seconds` on each of three tries refuses the model. The cost recorded per
    size (for the inline decision) is its fastest run. Raises `ModelFileError`.
    """
    inputs = all_score_inputs()
    count = len(inputs)
    single = np.empty((count, label_count), np.float32)
    seconds = [float("inf")] * max_batch_size
    for size in range(1, max_batch_size + 1):
        starts = range(0, count, size) if size <= count else range(1)
        timings: list[float] = []
        for start in starts:
            rows = (np.arange(size) + start) % count
            tries: list[float] = []
            out = _timed_run(run, inputs[rows], size, label_count, tries)
            while tries[-1] > max_batch_seconds and len(tries) < 3:  # noise, or slow?
                _timed_run(run, inputs[rows], size, label_count, tries)
            timings += tries
            if min(tries) > max_batch_seconds:  # every batch, not just the fastest
                raise ModelFileError(
                    f"a batch of {size} takes {min(tries) * 1000:.1f} ms, over the "
                    f"{max_batch_seconds * 1000:g} ms budget (HOLLANG_MODEL_MAX_BATCH_MS)"
                )
            if size == 1:
                single[start] = out[0]
            elif not np.allclose(out, single[rows], rtol=1e-4, atol=1e-4):
                bad = int(rows[~np.isclose(out, single[rows], 1e-4, 1e-4).all(axis=1)][0])
                raise ModelFileError(
                    f"a batch of {size} does not give the batch-of-one answer for input "
                    f"{inputs[bad].astype(int).tolist()}"
                )
        seconds[size - 1] = min(timings)  # the model's own cost, without machine noise
    return BatchCheck(batch_seconds=tuple(seconds), logits=single)


def _timed_run(
    run: Callable[[np.ndarray], np.ndarray],
    batch: np.ndarray,
    size: int,
    label_count: int,
    timings: list[float],
) -> np.ndarray:
    started = time.perf_counter()
    try:
        out = run(batch)
    except Exception as exc:  # ORT raises several private exception types
        text = str(exc).strip().splitlines()
        raise ModelFileError(
            f"a batch of {size} failed: {text[0][:300] if text else type(exc).__name__}"
        ) from exc
    timings.append(time.perf_counter() - started)
    if out.shape != (size, label_count):
        raise ModelFileError(
            f"a batch of {size} returned shape {list(out.shape)}, not {[size, label_count]}"
        )
    if not np.isfinite(out).all():
        raise ModelFileError(f"a batch of {size} returned non-finite logits")
    return out


def load_model(
    file: ModelFile,
    known_labels: Collection[str] | None = None,
    *,
    max_batch_size: int = 64,
    max_batch_seconds: float = float("inf"),
) -> LoadedModel:
    """Validate everything before anyone can be served by this model.

    Raises `ModelFileError` with the reason: labels unknown to the catalogue, a file that is
    not self-contained, a graph whose shapes do not fit, or a batch size that fails (see
    `check_batches`). This runs the file in the calling process: an untrusted file goes
    through `model.sandbox`, which calls this in its child.
    """
    model = open_session(file, known_labels)
    checked = check_batches(model.run, len(model.labels), max_batch_size, max_batch_seconds)
    return replace(model, batch_seconds=checked.batch_seconds)


def open_session(file: ModelFile, known_labels: Collection[str] | None = None) -> LoadedModel:
    """The checks that need no run (labels, self-contained, signature) and the session;
    nothing measured yet. A serving worker calls it directly only for a model the sandbox
    passed, with the costs the sandbox measured."""
    if known_labels is not None:
        check_labels(file.metadata.labels, known_labels)
    parse_model(file.data)  # no session may see a file that reaches outside itself
    try:
        session = ort.InferenceSession(
            file.data, sess_options=session_options(), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelFileError(f"not a loadable ONNX model: {exc}") from exc
    check_signature(session, len(file.metadata.labels))
    return LoadedModel(file=file, session=session, loaded_at=time.time())


def check_labels(
    labels: Collection[str],
    known: Collection[str],
    what: str = "hobbies of the active catalogue",
) -> None:
    """Every output label must name a hobby we can show; raise `ModelFileError` naming the
    first few that do not."""
    unknown = [label for label in labels if label not in known]
    if unknown:
        raise ModelFileError(
            f"{len(unknown)} label(s) are not {what}: "
            + ", ".join(repr(label) for label in unknown[:3])
        )


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


class ModelObserver(Protocol):
    """Per-model counters (the metrics module implements it): told of each batch the model
    answered, after its callers were, and of each batch refused for bad outputs."""

    def batch_done(self, inputs: np.ndarray, outputs: np.ndarray, seconds: float) -> None: ...

    def batch_refused(self, rows: int, nonfinite_rows: int) -> None: ...


class _BatchHook:
    """The active model's batch observer: its own counters, then the shadow, if any."""

    __slots__ = ("_engine", "_model", "_observer")

    def __init__(
        self, engine: ModelEngine, model: LoadedModel, observer: ModelObserver | None
    ) -> None:
        self._engine = engine
        self._model = model
        self._observer = observer

    def batch_done(self, inputs: np.ndarray, outputs: np.ndarray, seconds: float) -> None:
        if self._observer is not None:
            self._observer.batch_done(inputs, outputs, seconds)
        shadow = self._engine.shadow
        if shadow is not None:
            shadow.score(self._model, inputs, outputs)

    def batch_refused(self, rows: int, nonfinite_rows: int) -> None:
        if self._observer is not None:
            self._observer.batch_refused(rows, nonfinite_rows)


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
        # Set by `server.metrics.observe_engine`: the counters of each model swapped in.
        self.observer_for: Callable[[LoadedModel], ModelObserver] | None = None
        self.shadow: ShadowScorer | None = None
        self.swaps = 0

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
            MicroBatcher(
                model.run,
                self.settings,
                self.executor,
                self.stats,
                inline_rows,
                output_width=len(model.labels),
                observer=_BatchHook(
                    self, model, self.observer_for(model) if self.observer_for else None
                ),
            ),
        )
        self.swaps += 1
        if previous is not None:
            task = asyncio.get_running_loop().create_task(previous[1].close())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return previous[0]
        return None

    def set_shadow(self, scorer: ShadowScorer | None) -> None:
        """Score every later batch with `scorer` too (None: stop); the replaced one stops."""
        previous, self.shadow = self.shadow, scorer
        if previous is not None and previous is not scorer:
            previous.close()

    async def close(self) -> None:
        """Finish every queued request, then release the inference thread."""
        if self._active is not None:
            await self._active[1].close()
        if self._retiring:
            await asyncio.gather(*self._retiring)
        self.set_shadow(None)
        self.executor.shutdown(wait=True)
