"""The web page at /, driven in headless Chromium (Debian's chromium + the playwright package)."""
import os
import shutil
import socket
import threading
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

CHROMIUM = os.environ.get("NERKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TEXT = "John Smith lives in Paris 😀 and visited New York City with Mary Jones; Zürich was next."


def _chromium_or_skip():
    if not os.path.isfile(CHROMIUM) or not os.access(CHROMIUM, os.X_OK):
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _chromium_or_skip()
    import uvicorn

    from nerkit.predict import Tagger
    from nerkit.serve import create_app

    from tiny import make_tiny_model

    tagger = Tagger.load(make_tiny_model(tmp_path_factory.mktemp("tiny") / "model"), backend="torch")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(tagger), host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline and th.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", tagger
    srv.should_exit = True
    th.join(10)


def test_page_highlights_entities_in_place(server):
    sync_api = _chromium_or_skip()
    base, tagger = server
    want = tagger.predict([TEXT])[0]
    assert want, "the tiny model should predict some entities in TEXT"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            external = []
            page.on("request", lambda r: external.append(r.url) if not r.url.startswith(base) else None)
            page.goto(base + "/")
            page.wait_for_selector("body[data-tagged]")  # the example text was tagged on load
            page.fill("#input", TEXT)
            before = page.get_attribute("body", "data-tagged")
            page.click("#tag")
            page.wait_for_function(f"document.body.dataset.tagged !== '{before}'")
            page.wait_for_function("document.getElementById('input').value === document.getElementById('output').textContent")

            marks = page.eval_on_selector_all("#output mark.ent", """els => els.map(m => ({
                text: m.textContent, label: m.dataset.label, start: +m.dataset.start, end: +m.dataset.end,
                title: m.title, tip: m.dataset.tip, bg: getComputedStyle(m).backgroundColor}))""")
            assert [(m["start"], m["end"], m["label"], m["text"]) for m in marks] == \
                [(e.start, e.end, e.label, e.text) for e in want]
            for m, e in zip(marks, want):
                assert m["text"] == TEXT[e.start:e.end]  # in place: code-point offsets, also after the emoji
                assert e.label in m["title"] and f"{e.score:.3f}" in m["title"]
                assert m["tip"] == f"{e.label} · {e.score:.2f}"
            colours = {}
            for m in marks:
                colours.setdefault(m["label"], set()).add(m["bg"])
            assert all(len(c) == 1 for c in colours.values())  # one colour per label ...
            if len(colours) > 1:
                assert len({next(iter(c)) for c in colours.values()}) == len(colours)  # ... and distinct labels differ

            # The CSS tooltip shows label and score on hover.
            page.hover("#output mark.ent >> nth=0")
            # Wait for the fade-in to finish rather than a fixed time (at 250 ms a busy CI once read opacity 0.85).
            page.wait_for_function("() => parseFloat(getComputedStyle(document.querySelector('#output mark.ent'), "
                                   "'::after').opacity) > 0.9", timeout=5000)
            tip = page.eval_on_selector("#output mark.ent", "m => [getComputedStyle(m, '::after').content, "
                                                            "getComputedStyle(m, '::after').opacity]")
            assert want[0].label in tip[0] and float(tip[1]) > 0.9

            rows = page.eval_on_selector_all("#entities tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent))")
            assert [(r[1], r[2], int(r[3]), int(r[4])) for r in rows] == [(e.text, e.label, e.start, e.end) for e in want]

            # Errors from the API are shown, not swallowed.
            page.fill("#input", "x" * 20_001)
            page.click("#tag")
            page.wait_for_selector("#status.error")
            assert "max_chars" in page.text_content("#status")
            assert external == []  # self-contained: no CDN or other outside requests
        finally:
            browser.close()


def test_tag_button_cancels_the_pending_live_tag(server):
    """Typing schedules a live tag 300 ms later; pressing Tag sends it now and cancels that one, so the output is
    not rendered again under the user's pointer (a re-render drops a hover tooltip)."""
    sync_api = _chromium_or_skip()
    base, _ = server
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(base + "/")
            page.wait_for_selector("body[data-tagged]")
            posts = []
            page.on("request", lambda r: posts.append(r.post_data) if r.url.endswith("/v1/entities") else None)
            # type and press Tag in one go (as a fast user does), then wait past the 300 ms debounce
            page.evaluate("""t => { const i = document.getElementById('input'); i.value = t;
                                   i.dispatchEvent(new Event('input')); document.getElementById('tag').click(); }""", TEXT)
            page.wait_for_function("document.getElementById('input').value === document.getElementById('output').textContent")
            page.wait_for_timeout(800)
            assert len(posts) == 1, posts
        finally:
            browser.close()
