"""HTTP service: ``POST /v1/entities`` tags texts; concurrent requests are micro-batched.

``create_app(MODEL_DIR or Tagger, Limits(...))`` returns a FastAPI app; ``nerkit serve MODEL_DIR`` runs it
with uvicorn. Requests wait in an asyncio queue; one worker thread tags the requests waiting together (up to
``max_batch_texts`` texts, after at most ``max_wait_ms`` for more to arrive) as one job, one model call at a
time, the job with the least work left first, so a small request is not held up by a large one; each request
gets its own results, in order, equal to a direct ``Tagger.predict`` call. Every input problem is answered
with a JSON error that names what is wrong (413 for a limit, 408 for a body that stops arriving, 422 for a
malformed body); nothing a client sends stops the server, and a stopping server waits at most
``shutdown_timeout_s`` for open requests.
"""
# size: ~570 lines because the HTTP contract (limits, the body reader, request and error bodies, the micro-batcher
# and the routes that use them) reads best in one file; the routes are one closure over the app's state.

import asyncio
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nerkit._version import __version__
from nerkit.errors import NerkitError
from nerkit.modeldir import ModelMeta

log = logging.getLogger("nerkit.serve")
STATIC = Path(__file__).parent / "static"


@dataclass
class Limits:
    """What one request may ask for, how long its body may take to arrive, and how the worker batches requests."""

    max_chars: int = 20_000  # characters per text
    max_texts: int = 256  # texts per request
    max_body_bytes: int = 4 * 1024 * 1024  # request body size
    max_batch_texts: int = 64  # texts tagged together (a request is never split between jobs)
    max_wait_ms: float = 2.0  # how long the worker waits for more requests before tagging a partial batch
    max_pending_texts: int = 8192  # texts queued before new requests are refused with 503
    read_timeout_s: float = 30.0  # longest wait for the next piece of a request body (then 408 and close)
    shutdown_timeout_s: float = 10.0  # on SIGTERM/SIGINT, how long open requests may take before they are cut

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (k != "max_wait_ms" and v == 0) or (isinstance(getattr(type(self), k), int) and v < 1):
                raise NerkitError(f"limit {k} must be a positive number, got {v!r}")


class ApiError(Exception):
    """An error answered to the client as ``{"error": {"code", "message", ...}}``."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class Overloaded(Exception):
    pass


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
    yield  # noqa: unreachable - makes this a generator


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

    def __init__(self, tagger, max_batch_texts: int = 64, max_wait_ms: float = 2.0, max_pending_texts: int = 8192):
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
                    fut.set_exception(Overloaded("server is shutting down"))
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
        steps_fn = getattr(self.tagger, "predict_steps", None)
        steps = _in_parts(steps_fn, texts) if steps_fn is not None else _whole(self.tagger.predict, texts)
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


# An over-limit body up to this many bytes is read and dropped before the 413 is sent: clients that send the whole
# body before reading the answer (Python's urllib, requests) otherwise get a connection reset instead of the 413,
# because the server closes a socket that still holds unread data. Beyond it (or after DRAIN_SECONDS) the server
# answers and closes anyway: reading gigabytes to be polite is a denial of service.
DRAIN_BYTES = 64 * 1024 * 1024
DRAIN_SECONDS = 10.0


class _ReadTimeout(Exception):
    pass


class BodyLimit:
    """ASGI middleware that reads request bodies before anything parses them: 413 over ``max_bytes`` (after
    draining the rest, bounded), 408 when the client stops sending for ``read_timeout`` seconds, 422 for bodies
    that no JSON parser here could read (undecodable bytes, nesting deeper than the parser's recursion limit)."""

    def __init__(self, app, max_bytes: int, read_timeout: float = 30.0):
        self.app, self.max_bytes, self.read_timeout = app, max_bytes, read_timeout

    async def _receive(self, receive, timeout: float | None = None) -> dict:
        try:
            return await asyncio.wait_for(receive(), self.read_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise _ReadTimeout from None

    async def _drain(self, receive, more: bool) -> None:
        """Read and drop the rest of a body, up to DRAIN_BYTES and DRAIN_SECONDS."""
        deadline, dropped = time.monotonic() + DRAIN_SECONDS, 0
        while more and dropped <= DRAIN_BYTES:
            left = min(self.read_timeout, deadline - time.monotonic())
            if left <= 0:
                return
            try:
                msg = await self._receive(receive, left)
            except _ReadTimeout:
                return
            if msg["type"] != "http.request":
                return
            dropped += len(msg.get("body", b""))
            more = msg.get("more_body", False)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        size = None
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                return await _send_json(send, 400, ApiError(400, "bad_request", "invalid Content-Length header").body())
        waiting = headers.get(b"expect", b"").lower() == b"100-continue"
        if size is not None and size > self.max_bytes and (waiting or size > self.max_bytes + DRAIN_BYTES):
            # The client waits for "100 Continue" before sending (curl), or the body is too large to drain.
            return await _send_json(send, 413, _body_too_large(self.max_bytes, size).body())
        chunks, total = [], 0
        try:
            while True:
                msg = await self._receive(receive)
                if msg["type"] == "http.disconnect":
                    return
                body = msg.get("body", b"")
                total += len(body)
                more = msg.get("more_body", False)
                if total > self.max_bytes:
                    await self._drain(receive, more)
                    return await _send_json(send, 413, _body_too_large(self.max_bytes, size).body())
                chunks.append(body)
                if not more:
                    break
        except asyncio.CancelledError:
            # uvicorn's graceful-shutdown bound cut this request while its body was arriving: say so and end the
            # request here (re-raising would only log a traceback for an expected event).
            return await _send_json(send, 503, ApiError(503, "shutting_down", "the server is shutting down").body())
        except _ReadTimeout:
            return await _send_json(send, 408, ApiError(
                408, "timeout", f"the request body stopped arriving: nothing for {self.read_timeout:g} s "
                                f"(read_timeout_s={self.read_timeout:g}) after {total} bytes").body())
        whole = b"".join(chunks)
        if scope["path"].startswith("/v1/"):
            problem = _unparseable(whole)
            if problem:
                return await _send_json(send, 422, ApiError(422, "malformed_json", problem).body())
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def _unparseable(body: bytes) -> str | None:
    """Why a JSON parser cannot read ``body`` where FastAPI would only say "error parsing the body", else None."""
    try:  # FastAPI answers undecodable bytes with a bare 400; say what is wrong, as for any bad JSON
        body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        return (f"request body is not valid JSON: not {exc.encoding} text "
                f"(byte 0x{body[exc.start]:02x} at position {exc.start})")
    # Deep nesting exhausts the parser's recursion limit (RecursionError, which FastAPI turns into a vague 400).
    # Counting brackets first keeps the second parse to the rare bodies that could be that deep.
    if body.count(b"[") + body.count(b"{") > 256:
        try:
            json.loads(body)
        except RecursionError:
            return ("request body is not valid JSON for this service: arrays or objects are nested too deeply "
                    f"(the parser stops at about {sys.getrecursionlimit()} levels); "
                    'send {"texts": ["some text", ...]}')
        except ValueError:
            pass  # reported, with its position, by the request validation
    return None


def _body_too_large(limit: int, size: int | None) -> ApiError:
    got = f" ({size} bytes)" if size is not None else ""
    return ApiError(413, "limit_exceeded", f"request body is larger than max_body_bytes={limit}{got}",
                    limit="max_body_bytes", max=limit, **({"got": size} if size is not None else {}))


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


def public_name(value: str | None) -> str | None:
    """A model's name without the server's directories (they leak into anything published): a local path
    becomes its part below site-packages (a model shipped as a Python package) or its last component; hub ids
    such as ``org/name`` stay as they are."""
    if not value or not isinstance(value, str):
        return value
    p = Path(value)
    if not (p.is_absolute() or value.startswith(("~", "./", "../")) or p.exists()):
        return value
    parts = p.parts
    if "site-packages" in parts and parts[-1] != "site-packages":
        return "/".join(parts[parts.index("site-packages") + 1:])
    return p.name or value


def _finite(x: Any) -> Any:
    """JSON-safe copy (NaN/inf become null, unknown objects strings)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if x is None or isinstance(x, (str, int, bool)):
        return x
    return str(x)


def _describe_validation(errors: list[dict], content_type: str = "application/json") -> tuple[str, str, list[dict]]:
    """(code, one-line message, details) for FastAPI's validation errors."""
    details = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        details.append({"loc": loc, "type": e.get("type"), "msg": e.get("msg")})
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        pos = [p for p in first.get("loc", ()) if isinstance(p, int)]
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        where = f" at character {pos[0]}" if pos else ""
        return "malformed_json", f"request body is not valid JSON: {reason}{where}", details
    at_root = not [p for p in first.get("loc", ()) if p != "body"]
    if at_root and first.get("type") in ("missing", "model_attributes_type", "dict_type"):
        hint = "" if "json" in content_type else f" sent with Content-Type: application/json (not {content_type or 'none'})"
        return "invalid_request", 'request body must be a JSON object like {"texts": ["some text"]}' + hint, details
    msgs = []
    for d in details[:5]:
        field = ".".join(d["loc"]) or "body"
        msgs.append(f"{field}: {d['msg']}")
    more = f" (and {len(details) - 5} more)" if len(details) > 5 else ""
    return "invalid_request", "; ".join(msgs) + more, details


def create_app(tagger_or_dir, limits: Limits | None = None, backend: str = "auto"):
    """The FastAPI application serving a Tagger (or the model directory to load one from)."""
    # Long: the request/response models and the routes close over this app's tagger, batcher and limits.
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, StrictStr
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from nerkit.predict import Tagger

    limits = limits or Limits()
    tagger = tagger_or_dir if isinstance(tagger_or_dir, Tagger) or hasattr(tagger_or_dir, "predict") \
        else Tagger.load(tagger_or_dir, backend=backend)
    model_path = None if hasattr(tagger_or_dir, "predict") else str(tagger_or_dir)
    batcher = MicroBatcher(tagger, limits.max_batch_texts, limits.max_wait_ms, limits.max_pending_texts)
    started = time.time()

    class EntitiesRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"texts": ["Angela Merkel met Emmanuel Macron in Paris."]}]})
        texts: list[StrictStr] = Field(description=f"texts to tag (at most {limits.max_texts}, each at most "
                                                   f"{limits.max_chars} characters)")

    class EntityOut(BaseModel):
        start: int = Field(description="character offset of the first character")
        end: int = Field(description="character offset after the last character (text[start:end] == text)")
        label: str
        score: float = Field(description="mean probability of the entity's tags")
        text: str

    class TextResult(BaseModel):
        text: str
        entities: list[EntityOut]

    class EntitiesResponse(BaseModel):
        results: list[TextResult]

    class ErrorDetail(BaseModel):
        code: str
        message: str
        limit: str | None = None

    class ErrorResponse(BaseModel):
        error: ErrorDetail

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="nerkit", version=__version__, lifespan=lifespan,
                  description="Named-entity recognition with a fine-tuned nerkit model. "
                              "Concurrent requests are tagged together (micro-batching).")
    app.state.tagger = tagger
    app.state.batcher = batcher
    app.state.limits = limits
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes, read_timeout=limits.read_timeout_s)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        code, message, details = _describe_validation(list(exc.errors()), request.headers.get("content-type", ""))
        return JSONResponse({"error": {"code": code, "message": message, "details": _finite(details)}},
                            status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        log.exception("internal error")
        return JSONResponse({"error": {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}},
                            status_code=500)

    errors = {413: {"model": ErrorResponse, "description": "a limit was exceeded (the error names it)"},
              422: {"model": ErrorResponse, "description": "malformed JSON or wrong request shape"},
              503: {"model": ErrorResponse, "description": "too many texts queued"}}

    @app.post("/v1/entities", response_model=EntitiesResponse, responses=errors, tags=["entities"],
              summary="Tag named entities in texts")
    async def entities(req: EntitiesRequest):
        texts = req.texts
        if len(texts) > limits.max_texts:
            raise ApiError(413, "limit_exceeded", f"{len(texts)} texts in one request; max_texts={limits.max_texts}",
                           limit="max_texts", max=limits.max_texts, got=len(texts))
        for i, t in enumerate(texts):
            if len(t) > limits.max_chars:
                raise ApiError(413, "limit_exceeded",
                               f"texts[{i}] has {len(t)} characters; max_chars={limits.max_chars}",
                               limit="max_chars", max=limits.max_chars, got=len(t), index=i)
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ApiError(422, "invalid_text", f"texts[{i}] is not valid Unicode: unpaired surrogate at "
                                                    f"character {exc.start}", index=i) from None
        try:
            ents = await batcher.submit(texts)
        except Overloaded as exc:
            raise ApiError(503, "overloaded", str(exc)) from None
        except NerkitError as exc:
            raise ApiError(422, "invalid_text", str(exc)) from None
        body = {"results": [{"text": t, "entities": [e.to_dict() for e in es]} for t, es in zip(texts, ents)]}
        return Response(json.dumps(body, ensure_ascii=False), media_type="application/json")

    @app.get("/v1/health", tags=["service"], summary="Liveness and batching statistics")
    async def health():
        return {"status": "ok", "backend": getattr(tagger.engine, "name", "unknown"),
                "uptime_s": round(time.time() - started, 1), "pending_texts": batcher.pending,
                "batching": dict(batcher.stats)}

    @app.get("/v1/model", tags=["service"], summary="Labels, base model and evaluation metrics of the model")
    async def model_info():
        meta = getattr(tagger, "meta", None) or ModelMeta()
        types = sorted({lab.split("-", 1)[1] for lab in tagger.labels if "-" in lab})
        return _finite({"path": public_name(model_path), "labels": tagger.labels, "entity_types": types,
                        "base_model": public_name(meta.base_model), "metrics": meta.metrics or {},
                        "tag_scheme": meta.tag_scheme or "IOB2", "case_signal": tagger.case_signal,
                        "backend": getattr(tagger.engine, "name", "unknown"),
                        "nerkit_version": meta.nerkit_version, "limits": asdict(limits)})

    page = STATIC / "index.html"

    @app.get("/", include_in_schema=False)
    async def index():
        try:
            return HTMLResponse(page.read_text(encoding="utf-8"))
        except OSError:
            return HTMLResponse("<h1>nerkit</h1><p>The web page is missing; see <a href='/docs'>/docs</a>.</p>")

    return app


def serve(model_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, limits: Limits | None = None,
          backend: str = "auto", log_level: str = "info") -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    app = create_app(model_dir, limits, backend=backend)
    log.info("serving %s with backend %s", model_dir, app.state.tagger.engine.name)
    # timeout_graceful_shutdown: a client holding a request open must not keep a stopping server (SIGTERM from a
    # container runtime) alive until it is killed; open requests get limits.shutdown_timeout_s to finish.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=app.state.limits.shutdown_timeout_s)
