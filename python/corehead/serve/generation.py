"""The work behind each endpoint, on a worker thread with its own Engine: OpenAI messages and image
parts turned into a prompt + images, generation with per-token streaming and cancellation, and the
corehead extensions (per-request CoRe-sparse mode, attention rows of chosen heads).

No FastAPI here; errors are :class:`~corehead.serve.errors.APIError` or corehead's own exceptions.
"""

from __future__ import annotations

import base64
import binascii
import io
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from corehead.errors import ContextOverflowError
from corehead.images import load_image
from corehead.serve.errors import invalid
from corehead.tokenizer import TextStream

MAX_IMAGE_BYTES = 32 << 20  # decoded data-URL size; load_image's pixel limit guards decoding


def image_from_url(url: Any, param: str = "messages") -> np.ndarray:
    """An ``image_url`` as an (H, W, 3) uint8 array: a ``data:image/...;base64,...`` URL or a
    ``file://`` URL of a local file. Remote URLs are refused: the server fetches nothing."""
    if not isinstance(url, str) or not url:
        raise invalid("image_url.url must be a non-empty string", param, "invalid_image_url")
    if url.startswith("data:"):
        head, sep, payload = url[5:].partition(",")
        if not sep or not head.endswith(";base64"):
            raise invalid("a data URL image must look like data:image/png;base64,<data>", param, "invalid_image_url")
        if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
            raise invalid(f"the image is larger than {MAX_IMAGE_BYTES >> 20} MiB", param, "invalid_image_url")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise invalid("the data URL's base64 payload does not decode", param, "invalid_image_url") from None
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(data))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise invalid(f"the data URL holds no decodable image: {e}", param, "invalid_image") from None
        try:
            return load_image(img)
        except (ValueError, TypeError) as e:
            raise invalid(str(e), param, "invalid_image") from None
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise invalid(f"file URLs must name a local file (file:///path), got {url!r}", param,
                          "invalid_image_url")
        try:
            return load_image(Path(unquote(parsed.path)))
        except FileNotFoundError as e:
            raise invalid(str(e), param, "invalid_image_url") from None
        except (ValueError, TypeError) as e:
            raise invalid(str(e), param, "invalid_image") from None
    raise invalid("image_url must be a data: URL (base64) or a file:// URL; this server fetches no remote URLs",
                  param, "invalid_image_url")


def chat_messages(eng: Any, messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """OpenAI chat messages -> corehead messages (string contents, one image marker where each
    image part was) and the decoded images, in order.

    Text parts of one message are joined without separators, as OpenAI concatenates them."""
    out, images = [], []
    for i, m in enumerate(messages):
        content = m.get("content")
        if content is None:
            content = ""
        if isinstance(content, list):
            text = []
            for j, part in enumerate(content):
                kind = part.get("type")
                if kind == "text":
                    text.append(part.get("text") or "")
                elif kind == "image_url":
                    if eng.info["vision"] is None:
                        raise invalid("this model has no vision projector (start the server with --mmproj) and "
                                      "cannot take images", f"messages[{i}].content[{j}]", "image_not_supported")
                    spec = part.get("image_url")
                    url = spec.get("url") if isinstance(spec, dict) else spec
                    images.append(image_from_url(url, f"messages[{i}].content[{j}].image_url"))
                    text.append(eng.image_marker)
                else:
                    raise invalid(f"content part type {kind!r} is not supported (text, image_url)",
                                  f"messages[{i}].content[{j}].type")
            content = "".join(text)
        out.append({"role": m["role"], "content": content})
    return out, images


@dataclass
class Sampling:
    """What decides the generated tokens (OpenAI's names; top_k / min_p / repeat_penalty as in llama.cpp)."""

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False

    def seed_value(self) -> int:
        # No seed: a fresh one per request, as OpenAI samples differently on every call.
        return self.seed if self.seed is not None else secrets.randbits(63)


@dataclass
class Outcome:
    text: str = ""
    finish_reason: str = "length"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def prompt_tokens(eng: Any, prompt: str | list[int], images: list[np.ndarray]) -> int:
    if images:
        return int(eng.prepare(prompt, images)[0].size)
    return len(eng.token_ids(prompt))


def generate(eng: Any, prompt: str | list[int], images: list[np.ndarray], sampling: Sampling, job: Any,
             emit: Callable[[str], None]) -> Outcome:
    """Generate on `eng`, calling ``emit(text)`` with each new piece; returns the outcome.

    The text equals ``Engine.generate(prompt, ...)`` (same ids, same stop-string rule, same
    UTF-8 handling): pieces that could be the start of a stop string are held back until they are
    known not to be. `job.cancelled` is checked on every token, so a client that leaves stops the
    native loop within one token."""
    n_prompt = prompt_tokens(eng, prompt, images)
    n_ctx = eng.info["n_ctx"]
    if n_prompt >= n_ctx:
        raise ContextOverflowError(f"the prompt is {n_prompt} tokens; this server's context holds {n_ctx} (the "
                                   "reply needs at least one more): shorten the prompt or start the server with "
                                   "a larger --ctx-size")
    budget = n_ctx - n_prompt if sampling.max_tokens is None else sampling.max_tokens
    tok = eng.tokenizer
    stream = TextStream(tok)
    eog = set(tok.eog_tokens)
    stops = sampling.stop
    keep = max((len(s) for s in stops), default=0) - 1
    out = Outcome(prompt_tokens=n_prompt)
    state: dict[str, Any] = {"held": "", "finish": None, "n": 0, "eog": False}

    def send(text: str) -> None:
        if text:
            out.text += text
            emit(text)

    def on_token(t: int) -> bool:
        if job.cancelled:
            job.tokens_after_cancel += 1
            return False
        if t in eog and not sampling.ignore_eos:
            state["eog"] = True
            return False
        state["n"] += 1
        job.tokens = state["n"]
        held = state["held"] + stream.push(t)
        hits = [held.find(s) for s in stops if s in held]
        if hits:
            send(held[: min(hits)])
            state["held"] = ""
            state["finish"] = "stop"
            return False
        if len(held) > keep:
            cut = len(held) - keep if keep > 0 else len(held)
            send(held[:cut])
            held = held[cut:]
        state["held"] = held
        return True

    eng.generate_ids(prompt, images=images, max_tokens=budget, temperature=sampling.temperature,
                     top_k=sampling.top_k, top_p=sampling.top_p, min_p=sampling.min_p,
                     repeat_penalty=sampling.repeat_penalty, seed=sampling.seed_value(),
                     stop_at_eog=not sampling.ignore_eos, on_token=on_token)
    if state["finish"] is None:  # no stop string: what was held back goes out (as Engine.generate returns it)
        send(state["held"] + stream.flush())
        # The native loop also stops at an end-of-generation token it does not report; a reply that
        # ends before max_tokens and before the context is full ended that way.
        ended_early = state["n"] < budget and n_prompt + state["n"] < n_ctx
        state["finish"] = "stop" if state["eog"] or (ended_early and not sampling.ignore_eos) else "length"
    out.finish_reason = state["finish"]
    out.completion_tokens = state["n"]
    return out


# -- corehead extensions ---------------------------------------------------------------------------

@contextmanager
def cache_mode(eng: Any, core_heads: Any, visual_budget: int | None, default_heads: Any) -> Iterator[None]:
    """The KV-cache mode of one request: `core_heads` None / True = the server's (--core-heads or dense),
    False / [] = dense, (layer, head) pairs = CoRe-sparse with those heads; `visual_budget` the
    visual tokens per image the other heads keep."""
    if core_heads is True:
        core_heads = None
    with ExitStack() as stack:
        if core_heads is False or (isinstance(core_heads, list) and not core_heads):
            stack.enter_context(eng.kv_mode(None))
        elif core_heads is not None:
            stack.enter_context(eng.sparse([tuple(h) for h in core_heads], visual_budget=visual_budget or 0))
        elif visual_budget is not None:
            if default_heads is None:
                raise invalid("visual_budget needs CoRe heads: pass corehead.core_heads or start the server with "
                              "--core-heads", "corehead.visual_budget")
            current = eng._native().sparse_options
            stack.enter_context(eng.kv_mode(list(current.core_kv_heads), current.sink, visual_budget,
                                            current.visual_keep))
        yield


def attention_rows(eng: Any, prompt: str | list[int], images: list[np.ndarray], heads: list[list[int]],
                   positions: Any) -> dict[str, Any]:
    """Attention of the chosen heads at the chosen prompt positions over every key."""
    info = eng.info
    for layer, head in heads:
        if not (0 <= layer < info["n_layer"] and 0 <= head < info["n_head"]):
            raise invalid(f"head [{layer}, {head}] is out of range: the model has {info['n_layer']} layers x "
                          f"{info['n_head']} heads", "corehead.return_attention.heads")
    n_prompt = prompt_tokens(eng, prompt, images)
    if positions == "last":
        pos = [n_prompt - 1]
    else:
        pos = sorted({p + n_prompt if p < 0 else p for p in positions})
        if any(not 0 <= p < n_prompt for p in pos):
            raise invalid(f"positions must lie in [-{n_prompt}, {n_prompt}) for this {n_prompt}-token prompt",
                          "corehead.return_attention.positions")
    layers = sorted({layer for layer, _ in heads})
    rows = eng.attention(prompt, images, positions=pos, layers=layers)  # [n_layer_sel, n_head, n_pos, n_kv]
    out = [{"layer": layer, "head": head, "rows": rows[layers.index(layer), head].tolist()} for layer, head in heads]
    visual = eng.visual_token_positions(prompt, images).tolist() if images else []
    return {"positions": pos, "n_kv": int(rows.shape[-1]), "heads": out, "visual_positions": visual}
