"""The active model of this process, kept in step with the registry's "active" pointer.

Start-up: follow the pointer if there is one; otherwise publish the configured model file
(`HOLLANG_MODEL_PATH`, default the bundled one) and point at it. An upload through any
worker validates the file completely, publishes it, moves the pointer with a conditional
put, and swaps locally; every other worker sees the pointer move on its next poll and swaps
through the same validation. A pointer whose model fails validation here is refused and
reported, and the current model keeps serving.

Validation is `model.sandbox`: a child process with memory and time limits, awaited without
blocking the event loop. Only a model that passed there gets a session in this worker.

The pointer may also name a shadow: a published candidate each replica validates the same
way, then scores live batches with beside the active model, never serving it
(`model.shadow`). A shadow that fails validation or misbehaves on live rows is reported
(`shadow_error`) and never affects serving.

A pointer that cannot be parsed (truncated, not JSON, missing fields) never stops a
replica: at start it serves `HOLLANG_MODEL_PATH`, mid-run it keeps its model, and both say
why (`pointer_error`, shown in /health/ready and /info). An upload or `hollang model
activate` overwrites such a pointer (conditionally, on the bytes that were read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple, Protocol

from db.catalog import Catalog
from model import quality, sandbox
from model.engine import LoadedModel, ModelEngine, open_session
from model.modelfile import ModelFile, ModelFileError
from model.registry import (
    ActivePointer,
    CorruptPointer,
    ModelRegistry,
    RegistryEntry,
    RegistryError,
)
from model.scoring import mbti_from_scores, scores_from_answers
from model.shadow import ShadowScorer
from server import metrics
from storage.objectstore import ObjectNotFound, ObjectStoreError, PreconditionFailed

log = logging.getLogger("hollang.model")


class RankedKey(NamedTuple):
    """One model output: a hobby key and its logit (None when only the order is known)."""

    key: str
    score: float | None


@dataclass(frozen=True)
class Recommendation:
    """What the model says for one set of answers, resolved against the catalogue.

    Built by the in-process model (`ModelService`) or by a remote inference server
    (`server.inference_client`); the routes cannot tell which.
    """

    scores: tuple[int, int, int, int]
    mbti_type: str
    ranked: tuple[RankedKey, ...]  # every output of the model, best first
    hobby_keys: tuple[str, ...]  # every known hobby, best first
    catalog: Catalog  # the snapshot the keys were resolved against; use it, not a newer one
    model_version: str


class Recommender(Protocol):
    """Whatever answers the 12 answers with a recommendation."""

    async def recommend(self, answers: Mapping[int, int]) -> Recommendation: ...


class ModelService:
    def __init__(
        self,
        engine: ModelEngine,
        registry: ModelRegistry,
        initial_model: Path,
        catalog: Callable[[], Catalog],
        limits: sandbox.SandboxLimits | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits or sandbox.SandboxLimits(max_batch_size=engine.settings.max_batch_size)
        self.registry = registry
        self.initial_model = initial_model
        self._catalog = catalog
        self._lock = asyncio.Lock()
        # One validation at a time per worker: each child may use the whole memory limit.
        self._validating = asyncio.Semaphore(1)
        self._refused_sha: str | None = None
        self._refused_shadow_sha: str | None = None
        self.model_error: str | None = None  # a model this worker refused or could not load
        self.pointer_error: str | None = None  # the registry could not be read
        self.shadow_error: str | None = None  # the pointer's shadow, refused here
        # Pointer moves made by this worker: a poll whose read began before one is stale
        # (it would report, say, the corrupt pointer an upload just overwrote).
        self._moves = 0

    @property
    def last_error(self) -> str | None:
        """What operators should know about, shown in /info and /health/ready."""
        return self.pointer_error or self.model_error

    # ---- serving ----

    async def recommend(self, answers: Mapping[int, int]) -> Recommendation:
        scores = scores_from_answers(answers)
        prediction = await self.engine.predict(scores)
        catalog = self._catalog()
        labels = prediction.model.labels
        logits = prediction.logits.tolist()
        ranked = tuple(RankedKey(labels[i], logits[i]) for i in prediction.ranking)
        # A hobby retired by a newer catalogue is skipped, so the next best one is shown.
        keys = tuple(key for key, _ in ranked if key in catalog.hobby_by_key)
        return Recommendation(
            scores, mbti_from_scores(scores), ranked, keys, catalog, prediction.model.version
        )

    # ---- lifecycle ----

    async def start(self) -> None:
        """Install a model before serving, falling back to the initial file if the pointer's
        model fails. Never raises for a bad model: the service then starts without one,
        `/health/ready` says why, and an admin upload (or a pointer move) can fix it live."""
        async with self._lock:
            pointer: ActivePointer | None = None
            try:
                pointer = await asyncio.to_thread(self.registry.read_pointer)
                if pointer is None:
                    await self._publish_initial()
                    return
                await self._install_from(pointer)
            except (ModelFileError, ObjectStoreError, RegistryError) as exc:
                if _unreachable(exc):
                    # Not the model's fault: no refusal, so the next poll that reaches the
                    # store installs the pointer's model.
                    self.pointer_error = f"object store unreachable at start: {exc}"
                    log.error("%s; serving %s until it answers", exc, self.initial_model)
                elif isinstance(exc, CorruptPointer):
                    self.pointer_error = str(exc)
                    log.error("%s; serving %s until it is repaired", exc, self.initial_model)
                else:
                    if pointer is not None:
                        self._refused_sha = pointer.active.sha256
                    self.model_error = f"could not follow the active model pointer: {exc}"
                    log.error("%s; trying %s instead", self.model_error, self.initial_model)
                try:
                    file = await asyncio.to_thread(ModelFile.read, self.initial_model)
                    self.engine.swap(await self._validate(file))
                except ModelFileError as fallback:
                    self.model_error = f"{self.last_error}; initial model: {fallback}"
                    log.error("starting without a model: %s", self.model_error)

    async def _publish_initial(self) -> None:
        try:
            file = await asyncio.to_thread(ModelFile.read, self.initial_model)
            model = await self._validate(file)
        except ModelFileError as exc:
            self.model_error = f"initial model {self.initial_model} refused: {exc}"
            log.error("starting without a model: %s", self.model_error)
            return
        entry = await asyncio.to_thread(self.registry.publish, file)
        try:
            await asyncio.to_thread(self.registry.activate, entry, None)
        except PreconditionFailed:
            # Another worker published first: follow its pointer instead.
            pointer = await asyncio.to_thread(self.registry.read_pointer)
            if pointer is not None and pointer.active.sha256 != file.sha256:
                await self._install_from(pointer)
                return
        self.engine.swap(model)
        log.info("serving model %s (published from %s)", model.version, self.initial_model)

    async def _install_from(self, pointer: ActivePointer) -> None:
        file = await asyncio.to_thread(self.registry.fetch, pointer.active)
        model = await self._validate(file)
        self.engine.swap(model)
        log.info("serving model %s (%s)", model.version, file.sha256[:12])

    async def _validate(self, file: ModelFile) -> LoadedModel:
        return (await self._checked(file, reference=None))[0]

    async def _checked(
        self, file: ModelFile, reference: LoadedModel | None, role: str = "active"
    ) -> tuple[LoadedModel, sandbox.Validated]:
        """The sandbox's verdict, then a session here for a model that passed. A refusal is
        counted (`hollang_model_refused_loads{role}`)."""
        labels = self._catalog().hobby_keys
        try:
            async with self._validating:
                validated = await sandbox.validate(
                    file.data,
                    labels,
                    self.limits,
                    reference=reference.file.data if reference is not None else None,
                )
            session = await asyncio.to_thread(open_session, file)
        except ModelFileError:
            metrics.MODEL_REFUSED.labels(role).inc()
            raise
        return replace(session, batch_seconds=validated.batch_seconds), validated

    async def follow(self) -> None:
        """One poll: swap if the pointer moved to a model this worker does not run, and
        start, change or stop the shadow as the pointer says."""
        moves = self._moves
        try:
            pointer = await asyncio.to_thread(self.registry.read_pointer)
        except (ObjectStoreError, CorruptPointer) as exc:
            if moves != self._moves:
                return
            if isinstance(exc, CorruptPointer):
                self.pointer_error = str(exc)
            else:
                self.pointer_error = f"cannot read the active model pointer: {exc}"
            log.warning("%s; keeping model %s", self.pointer_error, self.version)
            return
        if moves != self._moves:
            return  # read before this worker moved the pointer; the next poll reads anew
        self.pointer_error = None
        await self._follow_active(pointer)
        await self._follow_shadow(pointer)

    async def _follow_active(self, pointer: ActivePointer | None) -> None:
        current = self.engine.model
        if pointer is None or (current and pointer.active.sha256 == current.file.sha256):
            # Nothing to install. A past refusal stops mattering once the pointer has moved
            # away from the refused model (a refused pointer target stays reported).
            if current and (pointer is None or pointer.active.sha256 != self._refused_sha):
                self.model_error = None
            return
        if pointer.active.sha256 == self._refused_sha:
            return
        async with self._lock:
            try:
                await self._install_from(pointer)
                self.model_error = None
            except (ModelFileError, ObjectStoreError, RegistryError) as exc:
                if _unreachable(exc):
                    self.pointer_error = f"cannot fetch model {pointer.active.version}: {exc}"
                    log.warning("%s; keeping model %s", self.pointer_error, self.version)
                    return
                self._refused_sha = pointer.active.sha256
                self.model_error = f"refused model {pointer.active.version}: {exc}"
                log.error("%s; keeping model %s", self.model_error, self.version)

    async def _follow_shadow(self, pointer: ActivePointer | None) -> None:
        """Install the pointer's shadow once (a refused one is not retried until the
        pointer names another); none, or the active model itself, means no shadow."""
        wanted = pointer.shadow if pointer is not None else None
        if wanted is not None and pointer is not None and wanted.sha256 == pointer.active.sha256:
            wanted = None
        current = self.engine.shadow
        if wanted is None:
            self.engine.set_shadow(None)
            self.shadow_error = None
            self._refused_shadow_sha = None
            return
        if current is not None and current.model.file.sha256 == wanted.sha256:
            return
        if wanted.sha256 == self._refused_shadow_sha:
            return
        try:
            await self._install_shadow(wanted)
        except (ModelFileError, ObjectStoreError, RegistryError) as exc:
            if _unreachable(exc):
                log.warning("cannot fetch shadow model %s: %s", wanted.version, exc)
                return
            self._refused_shadow_sha = wanted.sha256
            self.shadow_error = f"refused shadow model {wanted.version}: {exc}"
            self.engine.set_shadow(None)
            log.error("%s; serving is unaffected", self.shadow_error)

    async def _install_shadow(self, entry: RegistryEntry) -> None:
        file = await asyncio.to_thread(self.registry.fetch, entry)
        self._start_shadow((await self._checked(file, reference=None, role="shadow"))[0])

    def _start_shadow(self, model: LoadedModel | None) -> None:
        settings = self.engine.settings
        self.engine.set_shadow(
            None
            if model is None
            else ShadowScorer(
                model,
                max_inline_seconds=settings.max_inline_seconds,
                max_batch_size=settings.max_batch_size,
                observer=metrics.ShadowMetrics(model.version),
            )
        )
        self._refused_shadow_sha = None
        self.shadow_error = None
        if model is not None:
            log.info("scoring shadow model %s beside %s", model.version, self.version)

    # ---- administration ----

    async def upload(
        self, data: bytes, *, allow_degenerate: bool = False, require_agreement: float | None
    ) -> tuple[LoadedModel, quality.QualityReport]:
        """Validate fully, pass the quality gates against the model this worker serves,
        publish, activate, swap; raises ModelFileError/RegistryError."""
        file = await asyncio.to_thread(ModelFile.from_bytes, data)
        active = self.engine.model
        model, validated = await self._checked(file, reference=active)
        report = quality.compare(
            file.metadata.labels,
            validated.top3,
            (active.version, active.labels, validated.reference_top3)
            if active is not None and validated.reference_top3 is not None
            else None,
        )
        quality.enforce(
            report, allow_degenerate=allow_degenerate, require_agreement=require_agreement
        )
        async with self._lock:
            entry = await asyncio.to_thread(self.registry.publish, file)
            await self._move_pointer(lambda pointer: self.registry.activate(entry, pointer))
            self.engine.swap(model)
            self._refused_sha = None
            self.model_error = None
            self.pointer_error = None
        log.info("model %s uploaded and activated", model.version)
        return model, report

    async def rollback(self, to: str | None = None) -> LoadedModel:
        """Re-activate the previous version (or `to`, from the history), validated here
        before the pointer moves. The history is popped down to the target, so the next
        rollback goes one further back (`ModelRegistry.rollback_target`)."""
        async with self._lock:
            pointer = await asyncio.to_thread(self.registry.read_pointer)
            if pointer is None:
                raise RegistryError("there is no active model pointer to roll back")
            target, remaining = self.registry.rollback_target(pointer, to)
            file = await asyncio.to_thread(self.registry.fetch, target)
            model = await self._validate(file)
            try:
                await asyncio.to_thread(
                    lambda: self.registry.activate(target, pointer, history=remaining)
                )
            except PreconditionFailed:
                raise RegistryError("the active model changed meanwhile; try again") from None
            self._moves += 1
            self.engine.swap(model)
            self._refused_sha = None
            self.model_error = None
        log.info("rolled back to model %s", model.version)
        return model

    async def set_shadow(self, version: str | None) -> ActivePointer:
        """Name a published version as every replica's shadow (None: stop), after it passed
        validation here; it starts here at once, elsewhere at the next poll."""
        entry: RegistryEntry | None = None
        model: LoadedModel | None = None
        if version is not None:
            entry = await asyncio.to_thread(self.registry.find, version)
            file = await asyncio.to_thread(self.registry.fetch, entry)
            model = (await self._checked(file, reference=None, role="shadow"))[0]
        moved: list[ActivePointer] = []

        def move(pointer: ActivePointer | CorruptPointer | None) -> ActivePointer:
            if not isinstance(pointer, ActivePointer):
                raise RegistryError("there is no readable active model pointer to add a shadow to")
            if entry is not None and entry.sha256 == pointer.active.sha256:
                raise RegistryError(f"model {entry.version!r} is the active model, not a candidate")
            moved.append(self.registry.set_shadow(entry, pointer))
            return moved[-1]

        await self._move_pointer(move)
        self._start_shadow(model)
        return moved[-1]

    async def _move_pointer(
        self, move: Callable[[ActivePointer | CorruptPointer | None], ActivePointer]
    ) -> None:
        """Read-then-conditional-put; a lost race is retried on the fresh pointer. A corrupt
        pointer is overwritten (on the etag of the bytes that were read)."""
        for _ in range(3):
            pointer: ActivePointer | CorruptPointer | None
            try:
                pointer = await asyncio.to_thread(self.registry.read_pointer)
            except CorruptPointer as corrupt:
                pointer = corrupt
            try:
                await asyncio.to_thread(move, pointer)
                self._moves += 1
                return
            except PreconditionFailed:
                continue
        raise RegistryError("the active model pointer kept changing; try again")

    async def history(self) -> ActivePointer | None:
        """The pointer, or None if there is none, it cannot be parsed or the store does not
        answer (`pointer_error` then says why): the status route must not fail for it."""
        try:
            return await asyncio.to_thread(self.registry.read_pointer)
        except CorruptPointer as exc:
            self.pointer_error = str(exc)
        except ObjectStoreError as exc:
            self.pointer_error = f"cannot read the active model pointer: {exc}"
        return None

    @property
    def version(self) -> str | None:
        model = self.engine.model
        return model.version if model else None


def _unreachable(exc: Exception) -> bool:
    """A store that did not answer (retry later), unlike a missing or refused model."""
    return isinstance(exc, ObjectStoreError) and not isinstance(exc, ObjectNotFound)
