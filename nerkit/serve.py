"""HTTP service: ``POST /v1/entities`` tags texts; concurrent requests are micro-batched.

``create_app(MODEL_DIR or Tagger, Limits(...))`` returns a FastAPI app; ``nerkit serve MODEL_DIR`` runs it
with uvicorn. Requests wait in an asyncio queue; one worker thread tags the requests waiting together (up to
``max_batch_texts`` texts, after at most ``max_wait_ms`` for more to arrive) as one job, one model call at a
time, the job with the least work left first, so a small request is not held up by a large one; each request
gets its own results, in order, equal to a direct ``Tagger.predict`` call. Every input problem is answered
with a JSON error that names what is wrong (413 for a limit, 408 for a body or request head that stops arriving,
422 for a malformed body); nothing a client sends stops the server, and a stopping server waits at most
``shutdown_timeout_s`` for open requests, then answers them 503. The batcher and the middleware are in
``nerkit.serving`` (no web framework needed there); this module holds the limits, the routes and the runner.
"""
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nerkit._version import __version__
from nerkit.errors import NerkitError
from nerkit.modeldir import ModelMeta
from nerkit.serving.asgi import ApiError, BodyLimit, ShutdownAnswer
from nerkit.serving.batcher import MicroBatcher, Overloaded, ServedTagger, ShuttingDown

__all__ = ["ApiError", "BodyLimit", "Limits", "MicroBatcher", "Overloaded", "ServedTagger", "create_app", "serve"]

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
    read_timeout_s: float = 30.0  # longest wait for a request's head (headers), or the next piece of its body (408)
    shutdown_timeout_s: float = 10.0  # on SIGTERM/SIGINT, how long open requests may take before they are cut

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
                    or (k != "max_wait_ms" and v == 0) or (isinstance(getattr(type(self), k), int) and v < 1):
                raise NerkitError(f"limit {k} must be a positive number, got {v!r}")


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


def _schemas(limits: Limits):
    """The request, response and error models of the API (the request's field description names the limits)."""
    from pydantic import BaseModel, ConfigDict, Field, StrictStr

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

    return EntitiesRequest, EntitiesResponse, ErrorResponse


def _add_error_handlers(app) -> None:
    """Every error the app answers is JSON: ``{"error": {"code", "message", ...}}``."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

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


def _check_texts(texts: list[str], limits: Limits) -> None:
    """413 for a request over ``max_texts`` or a text over ``max_chars``; 422 for a text with a lone surrogate."""
    if len(texts) > limits.max_texts:
        raise ApiError(413, "limit_exceeded", f"{len(texts)} texts in one request; max_texts={limits.max_texts}",
                       limit="max_texts", max=limits.max_texts, got=len(texts))
    for i, t in enumerate(texts):
        if len(t) > limits.max_chars:
            raise ApiError(413, "limit_exceeded", f"texts[{i}] has {len(t)} characters; max_chars={limits.max_chars}",
                           limit="max_chars", max=limits.max_chars, got=len(t), index=i)
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApiError(422, "invalid_text", f"texts[{i}] is not valid Unicode: unpaired surrogate at "
                                                f"character {exc.start}", index=i) from None


def _add_routes(app, tagger: ServedTagger, batcher: MicroBatcher, limits: Limits, model_path: str | None) -> None:
    """``POST /v1/entities``, ``GET /v1/health``, ``GET /v1/model`` and the web page."""
    from fastapi.responses import HTMLResponse, Response

    EntitiesRequest, EntitiesResponse, ErrorResponse = _schemas(limits)
    started = time.time()
    errors = {413: {"model": ErrorResponse, "description": "a limit was exceeded (the error names it)"},
              422: {"model": ErrorResponse, "description": "malformed JSON or wrong request shape"},
              503: {"model": ErrorResponse, "description": "too many texts queued, or the server is stopping"}}

    @app.post("/v1/entities", response_model=EntitiesResponse, responses=errors, tags=["entities"],
              summary="Tag named entities in texts")
    async def entities(req: EntitiesRequest):
        texts = req.texts
        _check_texts(texts, limits)
        try:
            ents = await batcher.submit(texts)
        except Overloaded as exc:
            raise ApiError(503, "shutting_down" if isinstance(exc, ShuttingDown) else "overloaded", str(exc)) from None
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


def create_app(tagger_or_dir: "ServedTagger | str | os.PathLike", limits: Limits | None = None,
               backend: str = "auto"):
    """The FastAPI application serving a tagger (a ``Tagger``, or any ``ServedTagger``) or the model directory to
    load one from."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI

    from nerkit.predict import Tagger

    limits = limits or Limits()
    served = hasattr(tagger_or_dir, "predict")
    tagger = tagger_or_dir if served else Tagger.load(tagger_or_dir, backend=backend)
    batcher = MicroBatcher(tagger, limits.max_batch_texts, limits.max_wait_ms, limits.max_pending_texts)

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
    app.add_middleware(ShutdownAnswer)  # added last: the outermost of the two
    _add_error_handlers(app)
    _add_routes(app, tagger, batcher, limits, None if served else str(tagger_or_dir))
    return app


def uvicorn_options(limits: Limits) -> dict[str, Any]:
    """The uvicorn settings ``serve`` runs with (keyword arguments of ``uvicorn.run`` and ``uvicorn.Config``)."""
    from nerkit.serving.connection import head_deadline_protocol

    # timeout_graceful_shutdown: a client holding a request open must not keep a stopping server (SIGTERM from a
    # container runtime) alive until it is killed; open requests get limits.shutdown_timeout_s to finish, then a
    # 503 (ShutdownAnswer). http: h11 with a deadline for the request head, which uvicorn does not bound (a client
    # sending part of its headers, or nothing, held its connection forever).
    return {"access_log": False, "timeout_graceful_shutdown": limits.shutdown_timeout_s,
            "http": head_deadline_protocol(limits.read_timeout_s)}


def serve(model_dir: "ServedTagger | str | os.PathLike", host: str = "127.0.0.1", port: int = 8000,
          limits: Limits | None = None, backend: str = "auto", log_level: str = "info") -> None:
    """Run the service with uvicorn until interrupted (a model directory, or a tagger, as ``create_app``)."""
    import uvicorn

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise NerkitError(f"port must be a number from 0 to 65535, got {port!r}")
    limits = limits or Limits()
    app = create_app(model_dir, limits, backend=backend)
    log.info("serving %s with backend %s", type(model_dir).__name__ if hasattr(model_dir, "predict") else model_dir,
             app.state.tagger.engine.name)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(limits))
