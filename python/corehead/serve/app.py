"""The FastAPI application: OpenAI's chat/completions, completions and models endpoints, /health,
and corehead's /corehead/rank. `create_app` builds it in-process (no server needed: hand it to
uvicorn, or to httpx's ASGI transport); `corehead serve` runs it with uvicorn.

Request flow: the handler validates the body, wraps the work in a :class:`~corehead.serve.pool.Job`
and submits it (503 + Retry-After when the queue is full). The job runs on an Engine's worker
thread and reports through a :class:`Channel`: text deltas, then one terminal event ("done" or
"error"), so every accepted request is answered exactly once. A streamed reply starts only after
the first event, so errors found while preparing or prefilling (bad image, prompt over the
context) still get their proper status code instead of a 200 stream.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import corehead
from corehead.serve import generation
from corehead.serve.errors import APIError, from_exception, invalid
from corehead.serve.pool import EnginePool, Job, QueueFull
from corehead.serve.schemas import ChatCompletionRequest, CompletionRequest, CoreheadOptions, RankRequest

#: A ChatML template for model files without one (``--chat-template chatml``).
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
BUILTIN_TEMPLATES = {"chatml": CHATML}
POLL_S = 0.25  # how often a waiting handler checks that its client is still there
RETRY_AFTER_S = 1


class Channel:
    """Events from a worker thread to the handler on the event loop, in order, none lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: deque[tuple[str, Any]] = deque()
        self._event = asyncio.Event()
        self.checked = time.monotonic()  # when the handler last looked for a disconnect

    def put(self, kind: str, value: Any = None) -> None:  # any thread
        self._items.append((kind, value))  # deque.append is atomic
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            pass

    async def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next event, or None after `timeout` seconds without one."""
        while not self._items:
            self._event.clear()
            if self._items:
                break
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                return None
        return self._items.popleft()

    def drain(self) -> list[tuple[str, Any]]:
        out = []
        while self._items:
            out.append(self._items.popleft())
        return out


class _ClientGone(Exception):
    pass


class Server:
    """The state behind the routes: the pool, the served model's facts, the defaults."""

    def __init__(self, pool: EnginePool, model_id: str, facts: dict[str, Any], chat_template: str | None,
                 default_core_heads: Any, api_key: str | None, own_engines: bool) -> None:
        self.pool = pool
        self.model_id = model_id
        self.facts = facts
        self.chat_template = chat_template
        self.default_core_heads = default_core_heads
        self.api_key = api_key
        self.own_engines = own_engines
        self.created = int(time.time())

    # -- requests -> jobs ---------------------------------------------------------------------
    def check_model(self, model: str | None, required: bool = True) -> None:
        if model is None and not required:
            return
        if model != self.model_id:
            raise APIError(404, f"the model {model!r} does not exist: this server serves {self.model_id!r} "
                           "(GET /v1/models)", "invalid_request_error", "model", "model_not_found")

    def submit(self, fn: Callable[[Any, Job, Channel], Any]) -> tuple[Job, Channel]:
        """Queue `fn(engine, job, channel)`; its return value becomes the "done" event."""
        channel = Channel(asyncio.get_running_loop())

        def run(engine: Any, job: Job) -> None:
            try:
                result = fn(engine, job, channel)
            except BaseException as e:  # reported to the client whatever it is; the worker lives on
                job.failed = True
                channel.put("error", from_exception(e))
                if not isinstance(e, Exception):
                    raise
            else:
                job.deliver()
                channel.put("done", result)

        def skipped() -> None:
            channel.put("error", APIError(503, "the request was dropped before it started (client gone or server "
                                               "shutting down)", "server_error", None, "dropped"))

        job = Job(run, on_skipped=skipped)
        try:
            self.pool.submit(job)
        except QueueFull as e:
            raise APIError(503, f"the server is busy ({e}); retry later", "server_error", None, "server_busy",
                           headers={"Retry-After": str(RETRY_AFTER_S)}) from None
        return job, channel

    async def wait(self, request: Request, job: Job, channel: Channel) -> tuple[str, Any]:
        """The next event; cancels the job (and raises _ClientGone) when the client disconnects."""
        while True:
            event = await channel.get(POLL_S)
            if event is not None and event[0] != "progress":
                return event
            if event is None or time.monotonic() - channel.checked > POLL_S:
                channel.checked = time.monotonic()
                if await request.is_disconnected():
                    job.cancel()
                    raise _ClientGone
            if event is not None:
                return event

    # -- the work, on a worker thread ----------------------------------------------------------
    def chat_prompt(self, eng: Any, body: ChatCompletionRequest) -> tuple[str, list[Any]]:
        messages, images = generation.chat_messages(eng, [m.model_dump() for m in body.messages])
        if self.chat_template is not None:
            from corehead import chat

            tok = eng.tokenizer
            prompt = chat.render(self.chat_template, messages,
                                 bos_token=tok.token_text(tok.bos) if tok.bos >= 0 else "",
                                 eos_token=tok.token_text(tok.eos) if tok.eos >= 0 else "")
        else:
            try:
                prompt = eng.apply_chat_template(messages)
            except ValueError as e:
                if "no chat template" in str(e):
                    raise invalid(f"{e} (or start the server with --chat-template chatml|FILE)", "messages",
                                  "no_chat_template") from None
                raise
        return prompt, images

    def run_generation(self, eng: Any, job: Job, channel: Channel, prompt: Any, images: list[Any],
                       sampling: generation.Sampling, ext: CoreheadOptions | None,
                       stream: bool) -> generation.Outcome:
        ext = ext or CoreheadOptions()
        extra: dict[str, Any] = {}
        if ext.return_attention is not None:
            ra = ext.return_attention
            # Attention taps read the dense cache (full rows over every key): leave a server-wide sparse mode.
            dense = eng.kv_mode(None) if eng._native().sparse_options is not None else nullcontext()
            with dense:
                extra["attention"] = generation.attention_rows(eng, prompt, images, [list(h) for h in ra.heads],
                                                               ra.positions)
        with generation.cache_mode(eng, ext.core_heads, ext.visual_budget, self.default_core_heads):
            # Only a stream needs the pieces as they come; the full text is in the outcome.
            emit = (lambda text: channel.put("delta", text)) if stream else (lambda text: None)
            out = generation.generate(eng, prompt, images, sampling, job, emit)
            if ext.core_heads is not None or ext.visual_budget is not None or self.default_core_heads is not None:
                kv = eng.kv_stats()
                extra["kv_cache"] = {"mode": kv["mode"], "bytes": kv["bytes"]}
        out.extra = extra
        return out


def _chunk_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def _usage(out: generation.Outcome) -> dict[str, int]:
    return {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
            "total_tokens": out.prompt_tokens + out.completion_tokens}


def _error_response(err: APIError) -> Response:
    # ASCII JSON: a message may quote client input, and a lone surrogate in it must not break the reply.
    return Response(json.dumps(err.body()), status_code=err.status, headers=err.headers,
                    media_type="application/json")


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "the request body is invalid", None
    e = errors[0]
    loc = [str(p) for p in e.get("loc", ()) if p != "body"]
    if e.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if not loc:
        return f"the request body must be a JSON object ({e.get('msg', 'invalid')})", None
    if e.get("type") == "missing" and loc:
        return f"you must provide a {'.'.join(loc)!r} parameter", ".".join(loc)
    param = ".".join(loc) or None
    return f"{param + ': ' if param else ''}{e.get('msg', 'invalid value')}", param


class _Guard:
    """Before any route: the API key (``Authorization: Bearer KEY``, outside /health and the docs)
    and the declared body size (413 past `max_body` bytes, before the body is read). Plain ASGI,
    not BaseHTTPMiddleware: that one hides client disconnects from the handlers, and cancellation
    depends on seeing them."""

    OPEN = ("/health", "/docs", "/openapi.json")

    def __init__(self, app: Any, key: str | None, max_body: int) -> None:
        self.app = app
        self.expected = f"Bearer {key}".encode() if key else None
        self.max_body = max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            err = None
            if self.expected and scope["path"] not in self.OPEN and headers.get(b"authorization") != self.expected:
                err = APIError(401, "invalid or missing API key (Authorization: Bearer KEY)", "invalid_request_error",
                               None, "invalid_api_key")
            else:
                try:
                    size = int(headers.get(b"content-length", b"0"))
                except ValueError:
                    size = 0
                if size > self.max_body:
                    err = APIError(413, f"the request body is {size} bytes; this server takes at most "
                                        f"{self.max_body}", "invalid_request_error", None, "request_too_large")
            if err is not None:
                await _error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(model: str | Path | None = None, mmproj: str | Path | None = None, *,
               engines: Sequence[Any] | None = None, parallel: int = 1, max_queue: int = 64, n_ctx: int = 4096,
               n_threads: int | None = None, core_heads: Any = None, visual_budget: int = 0,
               core_fraction: float = 0.05, visual_keep: str = "snapkv", model_id: str | None = None,
               chat_template: str | None = None, api_key: str | None = None, max_body: int = 64 << 20) -> FastAPI:
    """The server application.

    Either `model` (+ `mmproj`): `parallel` Engines are loaded (each with `n_threads` threads, the
    CoRe-sparse mode of `core_heads` …) and closed on shutdown; or `engines`: Engines you made,
    which stay yours. None of both: the toy VLM embedded in corehead.
    `max_queue`: requests that may wait while every Engine is busy (more get 503).
    `chat_template`: "chatml", a jinja file, or None for the GGUF's own.
    `model_id`: the name clients pass as "model" (default: the model file's name).
    `api_key`: require ``Authorization: Bearer KEY``. `max_body`: the largest request body (bytes)."""
    template = None  # checked before any weights load
    if chat_template is not None:
        template = BUILTIN_TEMPLATES.get(chat_template)
        if template is None:
            path = Path(chat_template)
            if not path.is_file():
                raise FileNotFoundError(f"chat template: neither a built-in ({', '.join(BUILTIN_TEMPLATES)}) nor a "
                                        f"file: {chat_template}")
            template = path.read_text()
    own = engines is None
    if engines is None:
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ValueError(f"parallel must be an int >= 1, got {parallel!r}")
        sparse = {} if core_heads is None else dict(core_heads=core_heads, visual_budget=visual_budget,
                                                    core_fraction=core_fraction, visual_keep=visual_keep)
        engines = []
        try:
            for _ in range(parallel):
                engines.append(corehead.Engine(model, mmproj=mmproj, n_threads=n_threads, n_ctx=n_ctx, **sparse))
        except BaseException:
            for e in engines:
                e.close()
            raise
    engines = list(engines)
    if not engines:
        raise ValueError("engines is empty")
    facts = engines[0].info
    if model_id is None:
        model_id = Path(facts["path"]).stem
    default_heads = engines[0]._native().sparse_options
    pool = EnginePool(engines, max_queue=max_queue)
    server = Server(pool, model_id, facts, template, default_heads, api_key, own)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Cancel what runs, drop what waits; free the Engines we loaded.
            await asyncio.to_thread(pool.close, 10.0, own)

    app = FastAPI(title="corehead", version=corehead.__version__, lifespan=lifespan,
                  description="OpenAI-compatible server for GGUF (multimodal) LLMs, with corehead's extensions")
    app.state.server = server

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(request: Request, exc: RequestValidationError) -> Response:
        message, param = _validation_message(exc)
        return _error_response(invalid(message, param))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error_response(APIError(exc.status_code, str(exc.detail), kind))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return _error_response(from_exception(exc))

    app.add_middleware(_Guard, key=api_key, max_body=max_body)

    # -- OpenAI ----------------------------------------------------------------------------------
    def model_card() -> dict[str, Any]:
        f = server.facts
        vision = f["vision"]
        return {"id": server.model_id, "object": "model", "created": server.created, "owned_by": "corehead",
                "corehead": {"arch": f["arch"], "n_layer": f["n_layer"], "n_head": f["n_head"],
                             "n_head_kv": f["n_head_kv"], "n_ctx": f["n_ctx"], "file_type": f["file_type"],
                             "vision": vision["projector"] if vision else None,
                             "core_heads": server.default_core_heads is not None}}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_name:path}")
    async def get_model(model_name: str) -> dict[str, Any]:
        server.check_model(model_name)
        return model_card()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": server.model_id, **pool.snapshot()}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        server.check_model(body.model)
        body.check_supported()
        sampling = body.sampling(body.token_limit())

        def work(eng: Any, job: Job, channel: Channel) -> generation.Outcome:
            prompt, images = server.chat_prompt(eng, body)
            return server.run_generation(eng, job, channel, prompt, images, sampling, body.corehead, body.stream)

        return await respond(request, body.stream, body.stream_options, work, chat=True)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        server.check_model(body.model)
        body.check_supported()
        prompt = body.single_prompt()
        sampling = body.sampling(body.max_tokens)

        def work(eng: Any, job: Job, channel: Channel) -> generation.Outcome:
            return server.run_generation(eng, job, channel, prompt, [], sampling, body.corehead, body.stream)

        return await respond(request, body.stream, body.stream_options, work, chat=False)

    async def respond(request: Request, stream: bool, stream_options: Any,
                      work: Callable[[Any, Job, Channel], generation.Outcome], chat: bool) -> Response:
        cid = _chunk_id("chatcmpl" if chat else "cmpl")
        created = int(time.time())
        head = {"id": cid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": server.model_id, "system_fingerprint": f"corehead-{corehead.__version__}"}
        job, channel = server.submit(work)
        try:
            if not stream:
                while True:
                    kind, value = await server.wait(request, job, channel)
                    if kind == "error":
                        return _error_response(value)
                    else:
                        out: generation.Outcome = value
                        break
                choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": out.finish_reason}
                if chat:
                    choice["message"] = {"role": "assistant", "content": out.text, "refusal": None}
                else:
                    choice["text"] = out.text
                body = {**head, "choices": [choice], "usage": _usage(out)}
                if out.extra:
                    body["corehead"] = out.extra
                return JSONResponse(body)
            first = await server.wait(request, job, channel)
        except _ClientGone:
            return JSONResponse({}, status_code=499)  # nobody reads it
        except BaseException:  # the handler itself was cancelled (shutdown) or failed: stop the work
            job.cancel()
            raise
        if first[0] == "error":
            return _error_response(first[1])
        include_usage = bool(stream_options and stream_options.include_usage)
        head["object"] = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict[str, Any] | str | None, finish: str | None) -> dict[str, str]:
            if chat:
                choices = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
            else:
                choices = [{"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}]
            data: dict[str, Any] = {**head, "choices": choices}
            if include_usage:
                data["usage"] = None
            return {"data": json.dumps(data, ensure_ascii=False)}

        async def events() -> AsyncIterator[dict[str, str]]:
            finished = False
            try:
                if chat:
                    yield chunk({"role": "assistant", "content": ""}, None)
                pending = [first]
                while True:
                    pending += channel.drain()  # deltas that came together go out as one chunk
                    text = "".join(v for k, v in pending if k == "delta")
                    end = next(((k, v) for k, v in pending if k != "delta"), None)
                    pending = []
                    if text:
                        yield chunk({"content": text} if chat else text, None)
                    if end is not None:
                        kind, value = end
                        if kind == "error":
                            yield {"data": json.dumps(value.body())}
                        else:
                            last = chunk({}, value.finish_reason)
                            if value.extra:
                                data = json.loads(last["data"])
                                data["corehead"] = value.extra
                                last = {"data": json.dumps(data, ensure_ascii=False)}
                            yield last
                            if include_usage:
                                yield {"data": json.dumps({**head, "choices": [], "usage": _usage(value)})}
                        yield {"data": "[DONE]"}
                        finished = True
                        return
                    event = await channel.get()
                    assert event is not None
                    pending.append(event)
            finally:
                if not finished:  # the client left (or the server stops): stop generating
                    job.cancel()

        async def on_close(message: Any) -> None:
            job.cancel()

        return EventSourceResponse(events(), sep="\n", client_close_handler_callable=on_close)

    # -- corehead ----------------------------------------------------------------------------
    @app.post("/corehead/rank")
    async def rank(body: RankRequest, request: Request) -> Response:
        server.check_model(body.model, required=False)

        def work(eng: Any, job: Job, channel: Channel) -> dict[str, Any]:
            return rank_job(eng, job, channel, body)

        job, channel = server.submit(work)
        if not body.stream:
            try:
                while True:
                    kind, value = await server.wait(request, job, channel)
                    if kind == "error":
                        return _error_response(value)
                    if kind == "done":
                        return JSONResponse(value)
            except _ClientGone:
                return JSONResponse({}, status_code=499)
            except BaseException:
                job.cancel()
                raise

        async def events() -> AsyncIterator[dict[str, str]]:
            finished = False
            try:
                while True:
                    event = await channel.get()
                    assert event is not None
                    kind, value = event
                    if kind == "progress":
                        yield {"event": "progress", "data": json.dumps(value)}
                    elif kind == "error":
                        finished = True
                        yield {"event": "error", "data": json.dumps(value.body())}
                        return
                    elif kind == "done":
                        finished = True
                        yield {"event": "result", "data": json.dumps(value)}
                        return
            finally:
                if not finished:
                    job.cancel()

        return EventSourceResponse(events(), sep="\n")

    return app


def rank_job(eng: Any, job: Job, channel: Channel, body: RankRequest) -> dict[str, Any]:
    """rank_heads over the request's probes, one progress event per probe; stops between probes
    when cancelled. Computes what :func:`corehead.rank_heads` computes (same per-probe scores and
    reduction)."""
    from corehead import ram
    from corehead.probes import Probe

    probes = []
    for i, p in enumerate(body.probes):
        image = None
        if p.image is not None:
            if eng.info["vision"] is None:
                raise invalid("this model has no vision projector and cannot take images", f"probes[{i}].image",
                              "image_not_supported")
            image = generation.image_from_url(p.image, f"probes[{i}].image")
        try:
            probes.append(Probe(image=image, question=p.question, answer=p.answer, bbox=p.bbox, choices=p.choices,
                                span=p.span, prompt=p.prompt))
        except (TypeError, ValueError) as e:
            raise invalid(f"probe {i}: {e}", f"probes[{i}]") from None
    scores = []
    for i, probe in enumerate(probes):
        if job.cancelled:
            raise RuntimeError("cancelled")
        try:
            scores.append(ram.score_probe(eng, probe, query=body.query, check_answer=body.only_correct))
        except (ValueError, TypeError) as e:
            raise invalid(f"probe {i}: {e}", f"probes[{i}]") from None
        channel.put("progress", {"done": i + 1, "total": len(probes)})
    r, vm, chance, n = ram.reduce_scores(scores, body.only_correct)
    info = eng.info
    ranking = ram.HeadRanking(ram=r, visual_mass=vm, chance=chance, n_probes=n, n_head_kv=info["n_head_kv"],
                              model=ram.model_identity(info),
                              params={"query": body.query, "only_correct": body.only_correct})
    return ranking.to_dict()
