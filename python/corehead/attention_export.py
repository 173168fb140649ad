"""Attention rows of chosen heads, with the prompt's token and patch geometry, in one file.

:meth:`Engine.attention_export` writes a safetensors file (docs/explore.md) that any tool reads
without corehead::

    import json
    from safetensors import safe_open

    with safe_open("probe.safetensors", "np") as f:
        meta = json.loads(f.metadata()["corehead"])     # tokens, heads, prompt, model, ...
        rows = f.get_tensor("attention")                # [n_heads, n_query, n_tokens] float32

Tensors (positions are context positions, images expanded into their visual tokens):

- ``attention`` float32 ``[n_heads, n_query, n_tokens]``: row i of head k is the attention of query
  ``positions[i]`` of head ``heads[k]`` over every key (exactly :meth:`Engine.attention`'s rows);
- ``heads`` int32 ``[n_heads, 2]`` (layer, head); ``positions`` int32 ``[n_query]`` (sorted);
- ``token_ids`` int32 ``[n_tokens]`` (the image placeholder id at the visual positions);
- ``answer_positions`` int32: the positions that predict a probe's answer (RAM's query set; empty
  for a plain prompt);
- ``visual_positions`` int32 ``[n_visual]``, ``visual_image`` int32 ``[n_visual]`` (which image),
  ``visual_token_boxes`` float32 ``[n_visual, 4]`` (x0, y0, x1, y1) in original-image pixels (what
  :meth:`Engine.visual_token_boxes` gives), ``visual_spans`` int32 ``[n_spans, 2]`` ([start, end)
  runs of consecutive visual positions);
- ``image_sizes`` int32 ``[n_images, 2]`` (height, width); ``image_{i}`` uint8 ``[H, W, 3]`` the
  images themselves (unless ``include_images=False``);
- ``target_boxes`` float32 ``[n_boxes, 4]``: the probe's target region (clipped to its image).

The metadata key ``corehead`` holds JSON: format, token strings, prompt, question, answer, the
model's identity.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from corehead.engine import Engine

FORMAT = "corehead.AttentionExport/1"


@dataclass
class AttentionRecord:
    """What an export holds: ``tensors`` (name -> array, see the module docstring) and ``meta``."""

    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def text_positions(self) -> np.ndarray:
        """The context positions that are not visual tokens."""
        n = len(self.tensors["token_ids"])
        return np.setdiff1d(np.arange(n, dtype=np.int32), self.tensors["visual_positions"]).astype(np.int32)

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        save_file(tensors, str(path), metadata={"format": FORMAT, "corehead": json.dumps(self.meta)})
        return path


def _heads(eng: Engine, heads) -> list[tuple[int, int]]:
    from corehead.ablation import head_list
    from corehead.ram import HeadRanking

    if isinstance(heads, HeadRanking):  # a ranking stands for its CoRe heads
        heads = heads.top(0.05)
    if isinstance(heads, (str, bytes)) or not isinstance(heads, Sequence):
        raise TypeError(f"heads must be (layer, head) pairs, a HeadSet or a HeadRanking, got {type(heads).__name__}")
    info = eng.info
    out = head_list(heads, info["n_layer"], info["n_head"])
    if not out:
        raise ValueError("heads is empty: name at least one (layer, head)")
    return out


def _positions(positions, n: int, default: list[int]) -> list[int]:
    """Query positions: negative ones count from the end; sorted and de-duplicated (the order of
    Engine.attention's rows)."""
    if positions is None:
        return sorted(set(default))
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, bool):
        positions = [positions]
    out = set()
    for p in positions:
        if isinstance(p, (bool, np.bool_)) or not isinstance(p, (int, np.integer)):
            raise TypeError(f"positions must be ints, got {type(p).__name__}")
        q = int(p) + n if p < 0 else int(p)
        if not 0 <= q < n:
            raise ValueError(f"position {int(p)} is outside the {n}-token context")
        out.add(q)
    if not out:
        raise ValueError("positions is empty")
    return sorted(out)


def _token_strings(eng: Engine, ids: np.ndarray) -> list[str]:
    try:
        tok = eng.tokenizer
    except ValueError:  # a file without a tokenizer: ids only
        return [str(int(t)) for t in ids]
    return [tok.token_to_piece(int(t)).decode("utf-8", "replace") for t in ids]


def _spans(positions: np.ndarray) -> np.ndarray:
    """[start, end) runs of consecutive positions."""
    if len(positions) == 0:
        return np.zeros((0, 2), np.int32)
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(positions)]])
    return np.stack([positions[starts], positions[ends - 1] + 1], axis=1).astype(np.int32)


def attention_record(eng: Engine, item, heads, images: Sequence[Any] = (), positions=None,
                     include_images: bool = True) -> AttentionRecord:
    """The attention rows of `heads` for `item` (a :class:`corehead.Probe`, a prompt str, or token
    ids) with its geometry; see the module docstring. positions: query positions (negative count
    from the end); default for a probe with an answer: the positions that predict the answer
    (RAM's query set), else the last prompt position."""
    from corehead.images import load_images
    from corehead.probes import Probe, clip_boxes
    from corehead.ram import model_identity, probe_prompt

    head_pairs = _heads(eng, heads)
    target = np.zeros((0, 4))
    meta: dict[str, Any] = {"format": FORMAT, "question": None, "answer": None}
    if isinstance(item, Probe):
        if images:
            raise ValueError("a probe carries its own image: do not pass images with it")
        if item.video is not None:
            raise ValueError("attention_export takes image and text probes; video probes are not supported yet")
        imgs = load_images([item.image]) if item.image is not None else []
        if imgs:
            eng.load_images(imgs)  # a clear error when the engine has no vision projector
        prompt = probe_prompt(eng, item)
        full = prompt + item.answer if item.answer else prompt
        meta.update(question=item.question, answer=item.answer)
        if imgs:
            h, w = imgs[0].shape[:2]
            target = clip_boxes(item.boxes(), w, h) if len(item.boxes()) else target
    elif isinstance(item, str) or (isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray))):
        imgs = eng.load_images(images)
        prompt = full = item
    else:
        raise TypeError(f"attention_export takes a Probe, a prompt str or token ids, got {type(item).__name__}")

    if imgs:
        ids, vis = eng.prepare(full, imgs)
        n_prompt = len(eng.prepare(prompt, imgs)[0]) if full != prompt else len(ids)
    else:
        ids = np.asarray(eng.token_ids(full), dtype=np.int32)
        vis = np.zeros(0, np.int32)
        n_prompt = len(eng.token_ids(prompt)) if full != prompt else len(ids)
    n = len(ids)
    answer_positions = list(range(n_prompt - 1, n - 1)) if n > n_prompt else []
    if isinstance(positions, str):
        if positions != "text":
            raise ValueError(f"positions must be ints or 'text' (every non-visual position), got {positions!r}")
        positions = sorted(set(range(n)) - set(np.asarray(vis).tolist()))
    query = _positions(positions, n, answer_positions or [n_prompt - 1])

    layers = sorted({layer for layer, _ in head_pairs})
    if imgs:
        rows = eng.attention(full, images=imgs, positions=query, layers=layers)
    else:
        rows = eng.attention(list(map(int, ids)), positions=query, layers=layers)
    attention = np.stack([rows[layers.index(layer), h] for layer, h in head_pairs]).astype(np.float32)

    boxes = [np.asarray(eng.visual_token_boxes(img), dtype=np.float32).reshape(-1, 4) for img in imgs]
    n_boxes = sum(len(b) for b in boxes)
    if n_boxes != len(vis):
        raise RuntimeError(f"{len(vis)} visual positions but {n_boxes} token boxes")
    tensors: dict[str, np.ndarray] = {
        "attention": attention,
        "heads": np.asarray(head_pairs, dtype=np.int32).reshape(-1, 2),
        "positions": np.asarray(query, dtype=np.int32),
        "token_ids": np.asarray(ids, dtype=np.int32),
        "answer_positions": np.asarray(answer_positions, dtype=np.int32),
        "visual_positions": np.asarray(vis, dtype=np.int32),
        "visual_image": np.concatenate([np.full(len(b), i, np.int32) for i, b in enumerate(boxes)])
        if boxes else np.zeros(0, np.int32),
        "visual_token_boxes": np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
        "visual_spans": _spans(np.asarray(vis, dtype=np.int64)),
        "image_sizes": np.asarray([img.shape[:2] for img in imgs], dtype=np.int32).reshape(-1, 2),
        "target_boxes": np.asarray(target, dtype=np.float32).reshape(-1, 4),
    }
    if include_images:
        for i, img in enumerate(imgs):
            tensors[f"image_{i}"] = np.ascontiguousarray(img, dtype=np.uint8)
    meta.update(tokens=_token_strings(eng, np.asarray(ids)), prompt=full if isinstance(full, str) else None,
                model=model_identity(eng.info), n_images=len(imgs))
    return AttentionRecord(tensors, meta)


def attention_export(eng: Engine, item, heads, path: str | os.PathLike, images: Sequence[Any] = (),
                     positions=None, include_images: bool = True) -> AttentionRecord:
    """:func:`attention_record` written to `path` (safetensors); returns the record."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    record = attention_record(eng, item, heads, images=images, positions=positions, include_images=include_images)
    record.save(path)
    return record


def load_attention_export(path: str | os.PathLike) -> AttentionRecord:
    """Read back a file of :func:`attention_export` (plain safetensors underneath)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"attention export not found: {path}")
    try:
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"{path}: not a safetensors file ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a corehead attention export (format {meta.get('format')!r})")
    return AttentionRecord(tensors, json.loads(meta["corehead"]))
