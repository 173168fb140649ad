"""`corehead serve` against the official `openai` client, over real HTTP on 127.0.0.1.

Each server is a `python -m corehead.cli serve` child process (the real CLI, the real uvicorn),
so RSS is the server's alone. References come from the Engine directly: the server's greedy (and
seeded) answers must equal ``Engine.chat`` / ``Engine.generate`` on the same files, streamed deltas
must concatenate to the non-streamed text, and errors must have OpenAI's shape and status codes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")

import corehead  # noqa: E402
from corehead import chat  # noqa: E402
from corehead import toy as toy_data  # noqa: E402
from corehead.serve.app import CHATML  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
TEXT_MODEL = DATA / "qwen2" / "model-f32.gguf"  # the smallest fixture: text only, no chat template
IMAGE = DATA / "qwen2vl" / "image.png"
TOY_ID = "toy-vlm-f16"
TEXT_ID = "model-f32"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str) -> None:
        self.proc = proc
        self.url = url
        self.client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def wait_idle(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            h = self.health()
            if h["busy"] == 0 and h["queued"] == 0:
                return h
            if time.monotonic() > deadline:
                raise AssertionError(f"server still busy after {timeout} s: {h}")
            time.sleep(0.05)


@contextmanager
def serve(*args: str) -> Iterator[Server]:
    port = _free_port()
    cmd = [sys.executable, "-m", "corehead.cli", "serve", "--port", str(port), "--log-level", "warning", "-t", "1",
           *args]
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited ({proc.returncode}): {log.read()}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not come up in 90 s")
            time.sleep(0.1)
        yield Server(proc, url)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        text = log.read()
        log.close()
        if os.environ.get("COREHEAD_SERVE_LOG"):
            Path(os.environ["COREHEAD_SERVE_LOG"]).open("a").write(f"== {' '.join(args)}\n{text}")
    # Whatever clients sent, the server never logged a crash.
    assert "Traceback" not in text, text


@pytest.fixture(scope="module")
def toy_server() -> Iterator[Server]:
    with serve() as s:  # no -m: the toy VLM embedded in corehead (chat template + mmproj)
        yield s


@pytest.fixture(scope="module")
def text_server() -> Iterator[Server]:
    with serve("-m", str(TEXT_MODEL), "--chat-template", "chatml", "-c", "256", "--parallel", "2") as s:
        yield s


@pytest.fixture(scope="module")
def toy_eng() -> Iterator[corehead.Engine]:
    with corehead.Engine.toy(n_threads=1) as eng:
        yield eng


@pytest.fixture(scope="module")
def text_engine() -> Iterator[corehead.Engine]:
    with corehead.Engine(TEXT_MODEL, n_threads=1, n_ctx=256) as eng:
        yield eng


def data_url(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.open(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_message(url: str, text: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def stream_text(stream) -> tuple[str, str | None, list]:
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    return text, (finish[-1] if finish else None), chunks


# -- answers equal the Engine's ----------------------------------------------------------------

def test_models_and_health(toy_server):
    models = toy_server.client.models.list()
    assert [m.id for m in models.data] == [TOY_ID]
    assert toy_server.client.models.retrieve(TOY_ID).id == TOY_ID
    h = toy_server.health()
    assert h["status"] == "ok" and h["engines"] == 1


def test_text_chat_matches_engine(toy_server, toy_eng):
    messages = [{"role": "user", "content": "What color is the triangle?"}]
    r = toy_server.client.chat.completions.create(model=TOY_ID, messages=messages, temperature=0, max_tokens=12)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == toy_eng.chat(messages, max_tokens=12)
    prompt = toy_eng.apply_chat_template(messages)
    assert r.usage.prompt_tokens == len(toy_eng.tokenize(prompt))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_image_chat_matches_engine(toy_server, toy_eng):
    question = "\nWhat color is the triangle?"  # the toy model's own layout: image, newline, question
    want = toy_eng.chat([{"role": "user", "content": question}], images=[IMAGE], max_tokens=8)
    for url in (data_url(IMAGE), IMAGE.as_uri()):  # a data URL and a local file URL
        r = toy_server.client.chat.completions.create(model=TOY_ID, messages=image_message(url, question),
                                                      temperature=0, max_tokens=8)
        assert r.choices[0].message.content == want
        assert r.usage.prompt_tokens == len(toy_eng.multimodal_tokens(toy_eng.image_marker + question, [IMAGE]))
    # The pixels really reach the model: on its own synthetic scenes the toy VLM answers right.
    for item in toy_data.probes(3, seed=11):
        r = toy_server.client.chat.completions.create(
            model=TOY_ID, messages=image_message(data_url(item["image"]), "\n" + item["question"]), temperature=0,
            max_tokens=1)
        assert r.choices[0].message.content == " " + item["answer"]


def test_streaming_equals_non_streamed(toy_server, toy_eng):
    cases = [([{"role": "user", "content": "What shape is in b2?"}], {}),
             (image_message(data_url(IMAGE), "\nWhat shape is red?"), {}),
             ([{"role": "user", "content": "What color is the circle?"}], {"stop": ["e"]})]
    for messages, extra in cases:
        full = toy_server.client.chat.completions.create(model=TOY_ID, messages=messages, temperature=0,
                                                         max_tokens=16, **extra)
        text, finish, chunks = stream_text(toy_server.client.chat.completions.create(
            model=TOY_ID, messages=messages, temperature=0, max_tokens=16, stream=True,
            stream_options={"include_usage": True}, **extra))
        assert text == full.choices[0].message.content
        assert finish == full.choices[0].finish_reason
        assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
        assert len({c.id for c in chunks}) == 1
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_sampling_options_match_engine(toy_server, toy_eng):
    messages = [{"role": "user", "content": "What is in a1?"}]
    kw = dict(temperature=1.3, top_p=0.9, seed=7, max_tokens=10)
    a = toy_server.client.chat.completions.create(model=TOY_ID, messages=messages, **kw)
    b = toy_server.client.chat.completions.create(model=TOY_ID, messages=messages, **kw)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content == toy_eng.chat(messages, **kw)
    stopped = toy_server.client.chat.completions.create(model=TOY_ID, messages=messages, stop=["o"], **kw)
    assert stopped.choices[0].message.content == toy_eng.chat(messages, stop=["o"], **kw)


def test_completions_match_engine(text_server, text_engine):
    prompt = "The red square is left of the blue circle."
    r = text_server.client.completions.create(model=TEXT_ID, prompt=prompt, temperature=0, max_tokens=12)
    assert r.object == "text_completion"
    assert r.choices[0].text == text_engine.generate(prompt, max_tokens=12)
    assert r.choices[0].finish_reason in ("stop", "length")
    ids = text_engine.tokenize(prompt)
    by_ids = text_server.client.completions.create(model=TEXT_ID, prompt=ids, temperature=0, max_tokens=12)
    assert by_ids.choices[0].text == r.choices[0].text
    streamed = text_server.client.completions.create(model=TEXT_ID, prompt=prompt, temperature=0, max_tokens=12,
                                                     stream=True)
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_chat_template_option(text_server, text_engine):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the cat?"}]
    r = text_server.client.chat.completions.create(model=TEXT_ID, messages=messages, temperature=0, max_tokens=10)
    assert r.choices[0].message.content == text_engine.generate(chat.render(CHATML, messages), max_tokens=10)


# -- errors ---------------------------------------------------------------------------------------

def _error(exc_info) -> dict:
    body = exc_info.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


def test_bad_requests_get_openai_errors(toy_server, text_server, toy_eng):
    c = toy_server.client
    ok = [{"role": "user", "content": "What color is the triangle?"}]
    with pytest.raises(openai.BadRequestError) as e:  # the client sends what we give: no model field
        c.chat.completions.create(messages=ok, extra_body={}, **{"model": openai.NOT_GIVEN})
    err = _error(e)
    assert e.value.status_code == 400 and err["type"] == "invalid_request_error" and err["param"] == "model"
    with pytest.raises(openai.NotFoundError) as e:
        c.chat.completions.create(model="gpt-4o", messages=ok)
    assert _error(e)["code"] == "model_not_found"
    for url, code in (("data:image/png;base64,@@not base64@@", "invalid_image_url"),
                      ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "invalid_image"),
                      ("data:text/plain,hello", "invalid_image_url"),
                      ("https://example.com/cat.png", "invalid_image_url"),
                      ("file:///no/such/image.png", "invalid_image_url")):
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=TOY_ID, messages=image_message(url, "hi"), max_tokens=4)
        assert _error(e)["code"] == code, url
    with pytest.raises(openai.BadRequestError) as e:  # streaming too: the error comes before any 200
        c.chat.completions.create(model=TOY_ID, messages=image_message("data:,", "hi"), stream=True)
    assert _error(e)["code"] == "invalid_image_url"
    for bad in ({"n": 2}, {"max_tokens": 0}, {"temperature": 5}, {"seed": -1}, {"presence_penalty": 1.0},
                {"messages": []}, {"messages": [{"role": "user"}]}, {"messages": [{"role": "wizard", "content": "x"}]},
                {"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}):
        body = {"model": TOY_ID, "messages": ok, **bad}
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(**body)
        _error(e)
    t = text_server.client
    with pytest.raises(openai.BadRequestError) as e:
        t.chat.completions.create(model=TEXT_ID, messages=image_message(data_url(IMAGE), "hi"))
    assert _error(e)["code"] == "image_not_supported"
    long_prompt = "one two three four five six seven eight nine ten " * 40  # > 256 tokens
    with pytest.raises(openai.BadRequestError) as e:
        t.completions.create(model=TEXT_ID, prompt=long_prompt, max_tokens=4)
    assert _error(e)["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        t.chat.completions.create(model=TEXT_ID, messages=[{"role": "user", "content": long_prompt}], stream=True)
    assert _error(e)["code"] == "context_length_exceeded"
    # Not through the client: bodies it would never send.
    for raw in (b"{not json", b"[1, 2]", b'{"model": "' + TOY_ID.encode() + b'", "messages": "hi"}', b"\xff\xfe"):
        r = httpx.post(toy_server.url + "/v1/chat/completions", content=raw,
                       headers={"content-type": "application/json"})
        assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}, raw
    # A lone surrogate (valid JSON, not valid UTF-8) must not break the error path.
    r = httpx.post(toy_server.url + "/v1/chat/completions", content=b'{"model": "' + TOY_ID.encode() +
                   b'", "messages": [{"role": "user", "content": "\\ud800"}]}',
                   headers={"content-type": "application/json"})
    assert r.status_code in (200, 400), r.text
    r = httpx.get(toy_server.url + "/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    # The server took all that and still answers as before.
    h = toy_server.wait_idle()
    assert h["failed"] >= 7  # the image and surrogate errors above were found on a worker, and reported
    assert h["accepted"] == h["completed"] + h["failed"] + h["cancelled"] + h["skipped"]
    again = c.chat.completions.create(model=TOY_ID, messages=ok, temperature=0, max_tokens=12)
    assert again.choices[0].message.content == toy_eng.chat(ok, max_tokens=12)


# -- corehead's extensions --------------------------------------------------------------------

def test_return_attention_and_core_heads(toy_server, toy_eng):
    question = "\nWhat color is the triangle?"
    heads = [[0, 0], [5, 3]]
    core = [[0, 0], [0, 6], [0, 3]]
    prompt = toy_eng.apply_chat_template([{"role": "user", "content": toy_eng.image_marker + question}])
    rows = toy_eng.attention(prompt, [IMAGE], positions=[-1], layers=[0, 5])  # the dense cache's rows
    n = len(toy_eng.multimodal_tokens(prompt, [IMAGE]))
    with toy_eng.sparse([tuple(h) for h in core], visual_budget=2):
        want_sparse = toy_eng.chat([{"role": "user", "content": question}], images=[IMAGE], max_tokens=6)
    want_dense = toy_eng.chat([{"role": "user", "content": question}], images=[IMAGE], max_tokens=6)
    for ext, want, mode in (({}, want_dense, None), ({"core_heads": core, "visual_budget": 2}, want_sparse, "sparse")):
        r = toy_server.client.chat.completions.create(
            model=TOY_ID, messages=image_message(data_url(IMAGE), question), temperature=0, max_tokens=6,
            extra_body={"corehead": {**ext, "return_attention": {"heads": heads, "positions": "last"}}})
        assert r.choices[0].message.content == want  # CoRe-sparse for this request only, as the Engine does it
        got = r.model_extra["corehead"]
        assert got.get("kv_cache", {}).get("mode") == mode
        att = got["attention"]
        assert att["positions"] == [n - 1] and att["n_kv"] == n
        assert att["visual_positions"] == toy_eng.visual_token_positions(prompt, [IMAGE]).tolist()
        for row, (layer, head) in zip(att["heads"], heads):
            assert (row["layer"], row["head"]) == (layer, head)
            np.testing.assert_allclose(row["rows"], rows[[0, 5].index(layer), head], rtol=1e-6, atol=1e-7)
    # Streaming carries the extension in its last chunk.
    chunks = list(toy_server.client.chat.completions.create(
        model=TOY_ID, messages=[{"role": "user", "content": "hi"}], max_tokens=3, temperature=0, stream=True,
        extra_body={"corehead": {"return_attention": {"heads": [[1, 2]], "positions": [0, -1]}}}))
    att = chunks[-1].model_extra["corehead"]["attention"]
    assert len(att["heads"][0]["rows"]) == 2 and att["positions"][0] == 0
    for bad in ({"core_heads": [[99, 0]]}, {"return_attention": {"heads": [[0, 99]]}},
                {"return_attention": {"heads": [[0, 0]], "positions": [10_000]}}, {"visual_budget": 3},
                {"core_heads": "heads.json"}):
        r = httpx.post(toy_server.url + "/v1/chat/completions", json={
            "model": TOY_ID, "messages": [{"role": "user", "content": "hi"}], "corehead": bad})
        assert r.status_code == 400 and r.json()["error"]["message"], bad


def test_rank_endpoint(toy_server, toy_eng):
    items = toy_data.probes(3, seed=5)
    probes = toy_data.as_probes(items, image_marker=toy_eng.image_marker)
    body = {"probes": [{"image": data_url(p["image"]), "question": q.question, "answer": q.answer, "bbox": q.bbox,
                        "prompt": q.prompt} for p, q in zip(items, probes)]}
    r = httpx.post(toy_server.url + "/corehead/rank", json=body, timeout=120)
    assert r.status_code == 200, r.text
    want = toy_eng.rank_heads(probes, progress=False)
    got = r.json()
    assert got["format"] == "corehead.HeadRanking/1" and got["n_probes"] == 3
    np.testing.assert_allclose(got["ram"], want.ram, rtol=1e-6, atol=1e-9)
    assert got["top_5pct"] == [list(h) for h in want.top(0.05)]
    events = []
    with httpx.stream("POST", toy_server.url + "/corehead/rank", json={**body, "stream": True}, timeout=120) as s:
        assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert [e for e in events if e[0] == "progress"] == [("progress", {"done": i, "total": 3}) for i in (1, 2, 3)]
    assert events[-1][0] == "result" and events[-1][1]["ram"] == got["ram"]
    r = httpx.post(toy_server.url + "/corehead/rank", json={"probes": [{"question": "x", "image": "data:,"}]})
    assert r.status_code == 400


# -- queueing, cancellation, load ----------------------------------------------------------------

def test_pool_admission_order_and_exactly_once():
    """The pool alone (fake engines): capacity = engines + max_queue, each job run
    exactly once, a job cancelled while waiting never runs, a job that raises leaves the worker alive."""
    from corehead.serve.pool import EnginePool, Job, QueueFull

    gate = threading.Event()
    ran: list[tuple[str, int]] = []
    lock = threading.Lock()

    def work(tag: int, fail: bool = False):
        def fn(engine, job):
            gate.wait(10)
            with lock:
                ran.append((engine, tag))
            if fail:
                raise RuntimeError("boom")
        return fn

    pool = EnginePool(["A", "B"], max_queue=3)
    try:
        skipped = []
        jobs = [Job(work(i, fail=(i == 1)), on_skipped=lambda i=i: skipped.append(i)) for i in range(5)]
        for j in jobs:
            pool.submit(j)
        with pytest.raises(QueueFull):  # 2 running + 3 waiting
            pool.submit(Job(work(99)))
        deadline = time.monotonic() + 10
        while pool.snapshot()["busy"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        jobs[4].cancel()  # still waiting: dropped without running
        gate.set()
        deadline = time.monotonic() + 10
        while (h := pool.snapshot())["busy"] + h["queued"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(t for _, t in ran) == [0, 1, 2, 3] and skipped == [4]
        assert {e for e, _ in ran} <= {"A", "B"}
        h = pool.snapshot()
        assert (h["accepted"], h["rejected"], h["completed"], h["failed"], h["skipped"]) == (5, 1, 3, 1, 1)
        pool.submit(Job(work(5)))  # the workers still serve after a failure
        deadline = time.monotonic() + 10
        while pool.snapshot()["completed"] < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert 5 in [t for _, t in ran]
    finally:
        pool.close(close_engines=False)


def test_cancel_after_delivery_still_counts_completed():
    """A streaming client closes its connection right after the last chunk, which cancels the job
    while its function is still returning: that request completed (this race once made the 32-client
    load test count 31 completions). A cancel before delivery still counts as cancelled."""
    from corehead.serve.pool import EnginePool, Job

    def delivered_then_cancelled(engine, job):
        job.deliver()
        job.cancel()

    def cancelled_then_delivered(engine, job):
        job.cancel()
        job.deliver()

    pool = EnginePool(["A"], max_queue=2)
    try:
        pool.submit(Job(delivered_then_cancelled))
        pool.submit(Job(cancelled_then_delivered))
        deadline = time.monotonic() + 10
        while (h := pool.snapshot())["completed"] + h["cancelled"] < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (h["completed"], h["cancelled"]) == (1, 1)
    finally:
        pool.close(close_engines=False)


def test_full_queue_503_and_disconnect_cancels():
    """One Engine, one waiting place: a running stream, a waiting client that leaves (its place
    frees at once and it never runs), a waiting one that stays, then 503 + Retry-After; the
    stream's client leaves and its generation stops within one token; the waiting one is served."""
    with serve("-m", str(TEXT_MODEL), "-c", "16384", "--parallel", "1", "--max-queue", "1") as s:
        long = {"model": TEXT_ID, "prompt": "one two three", "max_tokens": 16000, "temperature": 0,
                "stream": True, "ignore_eos": True}
        short = {"model": TEXT_ID, "prompt": "one two three", "max_tokens": 5, "temperature": 0}
        with httpx.stream("POST", s.url + "/v1/completions", json=long, timeout=60) as first:
            assert first.status_code == 200
            lines = first.iter_lines()
            assert next(line for line in lines if line.startswith("data: "))  # it generates now
            with pytest.raises(httpx.ReadTimeout):  # waits, then leaves
                httpx.post(s.url + "/v1/completions", json=short, timeout=0.3)
            deadline = time.monotonic() + 10
            while s.health()["skipped"] < 1:  # the server saw it go (it polls every 0.25 s)
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert s.health()["queued"] == 0
            waiting = ThreadPoolExecutor(1)
            stays = waiting.submit(s.client.completions.create, **short)
            while s.health()["queued"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            # The Engine is busy and the waiting place taken: 503 with Retry-After, right away.
            busy = httpx.post(s.url + "/v1/completions", json=short)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert busy.json()["error"]["code"] == "server_busy"
            with pytest.raises(openai.InternalServerError):
                s.client.completions.create(**short)
        # The stream's client left: its generation stops within one token, far from its 16000.
        served = stays.result(30)
        waiting.shutdown()
        h = s.wait_idle()
        print(f"\ncancel: stream stopped after {h['last_cancelled_tokens']} of 16000 tokens, "
              f"{h['max_tokens_after_cancel']} token(s) after the flag")
        assert h["cancelled"] == 1 and h["max_tokens_after_cancel"] <= 1
        assert 0 < h["last_cancelled_tokens"] < 16000
        assert (h["accepted"], h["rejected"], h["skipped"], h["completed"]) == (3, 2, 1, 1)
        want = s.client.completions.create(**short)
        assert served.choices[0].text == want.choices[0].text
        # A non-streaming client that leaves while it runs is cancelled too.
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/v1/completions", json={**long, "stream": False}, timeout=0.3)
        h = s.wait_idle()
        assert h["cancelled"] == 2 and h["last_cancelled_tokens"] < 16000
        assert (h["accepted"], h["completed"], h["failed"], h["skipped"]) == (5, 2, 0, 1)


def test_load_32_streaming_clients(text_server):
    """32 concurrent streaming clients, each answer complete and equal to its single-client answer;
    server RSS back within 5% afterwards."""
    n_clients, n_tokens = 32, 16
    prompts = [f"the cat sat near the tree {i} and the dog ran {i % 5}" for i in range(n_clients)]

    def ask(i: int, stream: bool) -> tuple[str, str | None]:
        kw = dict(model=TEXT_ID, messages=[{"role": "user", "content": prompts[i]}], temperature=0,
                  max_tokens=n_tokens)
        if not stream:
            r = text_server.client.chat.completions.create(**kw)
            return r.choices[0].message.content or "", r.choices[0].finish_reason
        text, finish, _ = stream_text(text_server.client.chat.completions.create(stream=True, **kw))
        return text, finish

    single = [ask(i, stream=False) for i in range(n_clients)]  # one at a time (and a warm-up)
    text_server.wait_idle()
    before = text_server.health()
    rss_before = text_server.rss()
    barrier = threading.Barrier(n_clients)

    def client(i: int) -> tuple[str, str | None]:
        barrier.wait(30)  # all 32 at once
        return ask(i, stream=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n_clients) as ex:
        got = list(ex.map(client, range(n_clients)))
    wall = time.perf_counter() - t0
    after = text_server.wait_idle()
    rss_after = text_server.rss()
    assert got == single  # every answer complete (finish_reason set) and equal to the single-client one
    assert all(f in ("stop", "length") for _, f in got)
    assert after["completed"] - before["completed"] == n_clients
    assert after["rejected"] == before["rejected"] and after["failed"] == before["failed"]
    # Every accepted request ended exactly one way.
    assert after["accepted"] == after["completed"] + after["failed"] + after["cancelled"] + after["skipped"]
    print(f"\nload: {n_clients} streaming clients x {n_tokens} tokens in {wall:.2f} s; server RSS "
          f"{rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB")
    assert abs(rss_after - rss_before) <= 0.05 * rss_before, (rss_before, rss_after)


def test_in_process_app_with_api_key(toy_eng):
    """create_app on Engines the caller owns, driven through httpx's ASGI transport (no socket)."""
    import asyncio

    from corehead.serve import create_app

    app = create_app(engines=[toy_eng], api_key="s3cret", model_id="toy")
    messages = [{"role": "user", "content": "What color is the square?"}]
    body = {"model": "toy", "messages": messages, "temperature": 0, "max_tokens": 6}

    async def go() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://corehead") as c:
            return (await c.post("/v1/chat/completions", json=body),
                    await c.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer s3cret"}),
                    await c.get("/health"))

    try:
        denied, ok, health = asyncio.run(go())
    finally:
        app.state.server.pool.close(close_engines=False)
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "invalid_api_key"
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == toy_eng.chat(messages,
                                                                                                    max_tokens=6)
    assert health.status_code == 200
    assert not toy_eng.closed  # the caller's Engine stays open


def test_server_wide_core_heads_and_body_limit(toy_eng):
    """--core-heads: requests run CoRe-sparse unless they ask for dense; bodies past max_body get 413."""
    import asyncio

    from corehead.serve import create_app

    core = [(0, 0), (0, 6), (0, 3)]
    app = create_app(None, core_heads=core, n_threads=1, model_id="toy", max_body=4096)  # loads its own Engine
    question = "\nWhat color is the triangle?"
    body = {"model": "toy", "messages": image_message(data_url(IMAGE), question), "temperature": 0, "max_tokens": 6}

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://corehead") as c:
            small = {**body, "messages": image_message(IMAGE.as_uri(), question)}
            return [await c.post("/v1/chat/completions", json=small),
                    await c.post("/v1/chat/completions", json={**small, "corehead": {"core_heads": False}}),
                    await c.post("/v1/chat/completions", json={**body, "user": "x" * 5000}),  # over 4096 bytes
                    await c.post("/v1/chat/completions", json={**small, "corehead": {
                        "return_attention": {"heads": [[2, 1]]}}})]

    try:
        sparse, dense, big, attention = asyncio.run(go())
    finally:
        app.state.server.pool.close()
    with toy_eng.sparse(core):
        want_sparse = toy_eng.chat([{"role": "user", "content": question}], images=[IMAGE], max_tokens=6)
    want_dense = toy_eng.chat([{"role": "user", "content": question}], images=[IMAGE], max_tokens=6)
    assert sparse.json()["choices"][0]["message"]["content"] == want_sparse
    assert sparse.json()["corehead"]["kv_cache"]["mode"] == "sparse"
    assert dense.json()["choices"][0]["message"]["content"] == want_dense
    assert dense.json()["corehead"]["kv_cache"]["mode"] == "dense"
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    # Attention rows come from the dense cache even on a sparse server; the reply stays sparse.
    prompt = toy_eng.apply_chat_template([{"role": "user", "content": toy_eng.image_marker + question}])
    rows = toy_eng.attention(prompt, [IMAGE], positions=[-1], layers=[2])
    got = attention.json()
    np.testing.assert_allclose(got["corehead"]["attention"]["heads"][0]["rows"], rows[0, 1], rtol=1e-6, atol=1e-7)
    assert got["choices"][0]["message"]["content"] == want_sparse and got["corehead"]["kv_cache"]["mode"] == "sparse"


def test_no_chat_template_is_a_400(text_engine):
    import asyncio

    from corehead.serve import create_app

    app = create_app(engines=[text_engine])  # the fixture file has no chat template and no --chat-template

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://corehead") as c:
            return await c.post("/v1/chat/completions", json={"model": TEXT_ID, "messages": [
                {"role": "user", "content": "hi"}]})

    try:
        r = asyncio.run(go())
    finally:
        app.state.server.pool.close(close_engines=False)
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_chat_template"


def test_cli_serve_options(monkeypatch, tmp_path):
    """The serve subcommand hands its options to the server (uvicorn replaced by a recorder)."""
    import corehead.serve
    from corehead.cli import main as cli_main

    seen: dict = {}
    monkeypatch.setattr(corehead.serve, "serve", lambda **kw: seen.update(kw))
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    heads = tmp_path / "heads.json"
    heads.write_text("[[0, 1]]")
    assert cli_main(["serve", "-m", str(TEXT_MODEL), "--parallel", "4", "--max-queue", "7", "--alias", "m",
                     "--core-heads", str(heads), "--visual-budget", "3", "--api-key", "k", "--host", "0.0.0.0"]) == 0
    assert seen["model"] == str(TEXT_MODEL) and seen["parallel"] == 4 and seen["max_queue"] == 7
    assert seen["n_threads"] == 2  # the cores shared between the 4 Engines
    assert seen["model_id"] == "m" and seen["api_key"] == "k" and seen["host"] == "0.0.0.0"
    assert seen["core_heads"] == str(heads) and seen["visual_budget"] == 3
    assert cli_main(["serve", "--parallel", "0"]) == 1


def test_serve_package_is_optional():
    """`import corehead` must not pull in FastAPI (the serve extra is optional)."""
    code = "import sys, corehead; assert 'fastapi' not in sys.modules and 'corehead.serve' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})
