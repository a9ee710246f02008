"""The micro-batcher: concurrent requests collected from an asyncio queue and tagged together on one worker thread,
one model call at a time, the job with the least work left first (``MicroBatcher``). No web framework needed:
``await MicroBatcher(tagger).submit(texts)`` from any asyncio code.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generator, Protocol, Sequence, runtime_checkable

log = logging.getLogger("nerkit.serve")


class NamedEngine(Protocol):
    """The part of an engine the server reports (``/v1/health``, ``/v1/model``)."""

    name: str


class ServedTagger(Protocol):
    """What the server calls on a tagger (``predict.Tagger`` is one): ``predict`` in the batcher's worker thread,
    ``labels``, ``case_signal``, ``meta`` (a ``ModelMeta``, a dict or None) and ``engine.name`` for the routes."""

    engine: NamedEngine
    labels: list[str]
    case_signal: bool
    meta: Any

    def predict(self, texts: Sequence[str]) -> list[list[Any]]:
        """Entities (objects with ``to_dict()``) of each text, equal whatever the texts are batched with."""
        ...


@runtime_checkable
class SteppedTagger(Protocol):
    """A tagger that can also run ``predict`` one model call at a time, so that other requests can run between."""

    def predict_steps(self, texts: Sequence[str]) -> Generator[int, None, list[list[Any]]]:
        """A generator that yields the padded tokens left before each model call and returns the entities."""
        ...


class Overloaded(Exception):
    """Too many texts are waiting: answered 503."""


class ShuttingDown(Overloaded):
    """The server stopped before the request was tagged: answered 503."""


class _Job:
    """Requests tagged together, run one model call at a time so that other jobs can run in between."""

    def __init__(self, batch: list[tuple[list[str], asyncio.Future]], steps, seq: int):
        self.batch, self.steps, self.seq = batch, steps, seq
        # Work left in tokens: estimated at ~4 characters per token until the texts are read.
        self.left = sum(len(t) for ts, _ in batch for t in ts) // 4
        self.result = None
        self.done = False

    def step(self) -> None:
        """Run the next model call (in the worker thread)."""
        try:
            self.left = next(self.steps)
        except StopIteration as stop:
            self.result, self.done = stop.value, True


def _whole(predict, texts):
    """``predict`` as a one-step job, for taggers without ``predict_steps``."""
    return predict(texts)
    yield  # unreachable: makes this a generator


# A job's texts are tagged in parts of about this many characters (one text of the default max_chars): reading
# and windowing a part is one uninterrupted step, and 20 texts of 20,000 characters took ~1 s of it at once.
PART_CHARS = 20_000


def _in_parts(predict_steps, texts: list[str]):
    """``predict_steps`` over consecutive parts of ``texts``; yields work left (tokens, ~4 characters each for
    parts not yet read) and returns the entities of all texts, in order. The model gives each text the same
    answer whatever it is batched with, so parts change nothing in the results."""
    parts, part, size = [], [], 0
    for t in texts:
        if part and size + len(t) > PART_CHARS:
            parts.append(part)
            part, size = [], 0
        part.append(t)
        size += len(t)
    parts.append(part)
    later = sum(len(t) for t in texts)
    results = []
    for part in parts:
        later -= sum(len(t) for t in part)
        steps = predict_steps(part)
        while True:
            try:
                left = next(steps)
            except StopIteration as stop:
                results.extend(stop.value)
                break
            yield left + later // 4
    return results


# A job with at most this many tokens left runs to its end (no switching), and the requests that arrive meanwhile
# wait in the queue to form the next job together: switching at every model call made jobs of ~8 short texts
# instead of ~28 in the load test, with half-empty batches. A larger job yields after each model call.
PREEMPT_TOKENS = 2048
# After this many model calls of other jobs, the oldest job runs next: small requests go first (least work
# left), yet a large request keeps getting at least one call in FAIR_EVERY when small ones never stop coming.
FAIR_EVERY = 4


class MicroBatcher:
    """Collects concurrent requests from an asyncio queue and tags them on one worker thread.

    Requests waiting together are tagged together (up to ``max_batch_texts`` texts per job). A job runs one
    model call (``Tagger.predict_steps``: a padded batch of ``batch_tokens`` tokens) at a time, and between
    two calls the job with the least work left goes next, so a 1-text request that arrives while 20 texts of
    20,000 characters are being tagged waits for one model call, not for the whole request. Each text's
    entities are those of a direct ``Tagger.predict`` call: the model gives a text the same answer whatever
    it is batched with.
    """

    def __init__(self, tagger: ServedTagger, max_batch_texts: int = 64, max_wait_ms: float = 2.0,
                 max_pending_texts: int = 8192):
        self.tagger = tagger
        self.max_batch_texts = max_batch_texts
        self.max_wait = max_wait_ms / 1000.0
        self.max_pending_texts = max_pending_texts
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="nerkit-tagger")
        self.queue: asyncio.Queue | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.jobs: list[_Job] = []
        self.pending = 0
        self._seq = 0
        self.stats = {"requests": 0, "texts": 0, "batches": 0, "largest_batch": 0, "model_calls": 0, "errors": 0}

    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is not loop or self.task is None or self.task.done():
            self.loop = loop
            self.queue = asyncio.Queue()
            self.pending = 0
            self.jobs = []
            self.task = loop.create_task(self._run(), name="nerkit-microbatcher")

    async def start(self) -> None:
        self._ensure_started()

    async def stop(self) -> None:
        if self.task is not None and self.loop is asyncio.get_running_loop():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            waiting = [f for job in self.jobs for _, f in job.batch]
            while self.queue is not None and not self.queue.empty():
                waiting.append(self.queue.get_nowait()[1])
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(ShuttingDown("the server is shutting down"))
            self.jobs = []
        self.task = None

    async def submit(self, texts: list[str]) -> list:
        """Entities of each text, tagged together with whatever other requests are waiting."""
        self._ensure_started()
        if not texts:
            return []
        if self.pending and self.pending + len(texts) > self.max_pending_texts:
            raise Overloaded(f"{self.pending} texts are waiting; try again shortly")
        fut = self.loop.create_future()
        self.pending += len(texts)
        self.queue.put_nowait((texts, fut))
        try:
            return await fut
        finally:
            self.pending -= len(texts)

    def _new_jobs(self, first=None) -> None:
        """Turn ``first`` and the requests waiting in the queue into jobs of up to ``max_batch_texts`` texts."""
        batch, n = [], 0
        while first is not None or not self.queue.empty():
            item, first = (first, None) if first is not None else (self.queue.get_nowait(), None)
            if item[1].done():  # the client went away
                continue
            if batch and n + len(item[0]) > self.max_batch_texts:
                self._add_job(batch)
                batch, n = [], 0
            batch.append(item)
            n += len(item[0])
        if batch:
            self._add_job(batch)

    def _add_job(self, batch) -> None:
        texts = [t for ts, _ in batch for t in ts]
        steps = _in_parts(self.tagger.predict_steps, texts) if isinstance(self.tagger, SteppedTagger) \
            else _whole(self.tagger.predict, texts)
        self._seq += 1
        self.jobs.append(_Job(batch, steps, self._seq))
        self.stats["batches"] += 1
        self.stats["requests"] += len(batch)
        self.stats["texts"] += len(texts)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(texts))

    async def _run(self) -> None:
        queue, since_oldest, current = self.queue, 0, None
        while True:
            if not self.jobs:
                first = await queue.get()
                if self.max_wait > 0 and queue.empty() and len(first[0]) < self.max_batch_texts:
                    await asyncio.sleep(self.max_wait)  # let requests that are arriving right now join this job
                self._new_jobs(first)
            elif current is None or current.done or current.left > PREEMPT_TOKENS:
                self._new_jobs()  # requests that arrived during the last model call
            self.jobs = [j for j in self.jobs if not all(f.done() for _, f in j.batch)]  # clients that went away
            if not self.jobs:
                current = None
                continue
            if current is not None and not current.done and current in self.jobs and current.left <= PREEMPT_TOKENS:
                job = current  # a small job runs to its end while new requests gather into the next one
            else:
                oldest = min(self.jobs, key=lambda j: j.seq)
                job = oldest if since_oldest >= FAIR_EVERY else min(self.jobs, key=lambda j: (j.left, j.seq))
                since_oldest = 0 if job is oldest else since_oldest + 1
            current = job
            try:
                await self.loop.run_in_executor(self.executor, job.step)
                self.stats["model_calls"] += 1
            except Exception:  # noqa: BLE001 - isolate the failing request(s): tag each request alone
                self.jobs.remove(job)
                for ts, fut in job.batch:
                    await self._tag_alone(ts, fut)
                continue
            if job.done:
                self.jobs.remove(job)
                k = 0
                for ts, fut in job.batch:
                    if not fut.done():
                        fut.set_result(job.result[k:k + len(ts)])
                    k += len(ts)

    async def _tag_alone(self, texts: list[str], fut: asyncio.Future) -> None:
        if fut.done():
            return
        try:
            res = await self.loop.run_in_executor(self.executor, self.tagger.predict, texts)
        except Exception as exc:  # noqa: BLE001 - reported to that client as a 500 with the reason
            self.stats["errors"] += 1
            log.exception("tagging failed")
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(res)
