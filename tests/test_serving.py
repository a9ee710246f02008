"""The micro-batcher and the ASGI middleware on their own: plain asyncio and plain ASGI, no web framework."""
import asyncio
import json
import sys
import time

from nerkit.serving.asgi import BodyLimit, ShutdownAnswer
from nerkit.serving.batcher import MicroBatcher, ServedTagger, ShuttingDown, SteppedTagger


class Upper:
    """A stub tagger: one "entity" per text (its upper-cased text), recording the batches it is given."""

    engine = type("E", (), {"name": "stub"})()
    labels, meta, case_signal = ["O"], None, False

    def __init__(self, delay: float = 0.0):
        self.delay, self.batches = delay, []

    def predict(self, texts):
        self.batches.append(list(texts))
        time.sleep(self.delay)
        if "POISON" in texts:
            raise RuntimeError("boom")
        return [[t.upper()] for t in texts]


def test_the_modules_need_no_web_framework():
    import subprocess

    code = ("import sys; import nerkit.serving.batcher, nerkit.serving.asgi, nerkit.serving.connection; "
            "bad = [m for m in ('fastapi', 'starlette', 'pydantic', 'uvicorn') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_stub_and_the_tagger_are_served_taggers(tagger):
    stub: ServedTagger = Upper()  # what the server calls is all a stub needs
    assert not isinstance(stub, SteppedTagger) and isinstance(tagger, SteppedTagger)


def test_batcher_tags_waiting_requests_together_each_gets_its_own_results():
    stub = Upper(delay=0.05)
    requests = [[f"text {i}", f"more {i}"] for i in range(12)]

    async def run():
        batcher = MicroBatcher(stub, max_batch_texts=64, max_wait_ms=5)
        await batcher.start()
        try:
            return await asyncio.gather(*[batcher.submit(r) for r in requests]), dict(batcher.stats)
        finally:
            await batcher.stop()

    results, stats = asyncio.run(run())
    assert results == [[[t.upper()] for t in r] for r in requests]
    assert len(stub.batches) < len(requests) and stats["requests"] == len(requests)
    assert sorted(t for b in stub.batches for t in b) == sorted(t for r in requests for t in r)  # each text once


def test_batcher_isolates_a_failing_request():
    stub = Upper(delay=0.02)

    async def run():
        batcher = MicroBatcher(stub, max_wait_ms=10)
        await batcher.start()
        try:
            return await asyncio.gather(*[batcher.submit(r) for r in (["a"], ["POISON"], ["b"])],
                                        return_exceptions=True)
        finally:
            await batcher.stop()

    ok1, bad, ok2 = asyncio.run(run())
    assert ok1 == [["A"]] and ok2 == [["B"]]
    assert isinstance(bad, RuntimeError) and "boom" in str(bad)


def test_batcher_stop_answers_waiting_requests():
    stub = Upper(delay=0.3)

    async def run():
        batcher = MicroBatcher(stub, max_wait_ms=0)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["first"]))
        await asyncio.sleep(0.05)  # the first is being tagged
        second = asyncio.ensure_future(batcher.submit(["second"]))
        await asyncio.sleep(0.01)
        await batcher.stop()
        return await asyncio.gather(first, second, return_exceptions=True)

    results = asyncio.run(run())
    assert all(isinstance(r, ShuttingDown) for r in results), results


# ------------------------------------------------------------------ ASGI middleware with a plain ASGI app


async def echo_app(scope, receive, send):
    """A plain ASGI app: answers 200 with the body it read."""
    body, more = b"", True
    while more:
        msg = await receive()
        body += msg.get("body", b"")
        more = msg.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(app, chunks, headers=(), method="POST", path="/v1/entities", gap: float = 0.0):
    """Run ``app`` on one request whose body arrives in ``chunks`` (``gap`` seconds apart); (status, body)."""
    sent = []

    async def run():
        queue = list(chunks)

        async def receive():
            if not queue:
                await asyncio.sleep(3600)  # the client stopped sending
            await asyncio.sleep(gap)
            return {"type": "http.request", "body": queue.pop(0), "more_body": bool(queue)}

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "method": method, "path": path, "headers": list(headers)}
        await app(scope, receive, send)

    asyncio.run(run())
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_body_limit_passes_a_body_within_the_limit_through():
    app = BodyLimit(echo_app, max_bytes=100)
    assert call(app, [b'{"texts": ', b'["a"]}']) == (200, b'{"texts": ["a"]}')
    assert call(app, [b""], method="GET", path="/v1/health")[0] == 200


def test_body_limit_answers_413_408_and_422_in_json():
    app = BodyLimit(echo_app, max_bytes=100, read_timeout=0.2)
    status, body = call(app, [b"x" * 60, b"x" * 60])  # no Content-Length: counted while it arrives
    assert status == 413 and json.loads(body)["error"]["limit"] == "max_body_bytes"
    status, body = call(app, [], headers=[(b"content-length", b"1000000"), (b"expect", b"100-continue")])
    assert status == 413 and "1000000" in json.loads(body)["error"]["message"]  # answered before any body
    status, body = call(app, [b'{"texts": [', b'"a"]}'], gap=0.5)
    assert status == 408 and "read_timeout_s" in json.loads(body)["error"]["message"]
    status, body = call(app, [b'{"texts": ["\x80"]}'])
    assert status == 422 and "0x80" in json.loads(body)["error"]["message"]


def test_shutdown_answer_turns_a_cut_request_into_a_json_503():
    async def cut(scope, receive, send):
        raise asyncio.CancelledError  # what uvicorn does to a request still open after its shutdown bound

    status, body = call(ShutdownAnswer(cut), [b"{}"])
    assert status == 503 and json.loads(body)["error"]["code"] == "shutting_down"
    assert call(ShutdownAnswer(echo_app), [b"ok"]) == (200, b"ok")
