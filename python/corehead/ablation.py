"""Head ablation (docs/architecture.md §5): zero, mean and knockout interventions on chosen heads.

    with eng.ablated(ranking.top(0.05), method="zero"):
        eng.generate(...)

- ``zero``: the head's output (its slice of the attention output, before the output projection)
  is 0.
- ``mean``: the head's output is replaced by its mean over every position of a reference set of
  prompts or probes (``reference=``, images included; cached per engine and reference), or by
  precomputed ``means=`` from :func:`head_means`.
- ``knockout``: the head may not read the visual tokens of the prompt (−inf on those keys for
  that head only) from the queries after the image (``queries="after"``, the default, as in the
  cross-modal information-flow literature: image -> image attention and the text before the
  image untouched), or from every query, image tokens included (``queries="all"``); for text
  prompts pass ``knockout_keys`` (context positions). Chosen (query, key) edges:
  :mod:`corehead.knockout`.

Gated DeltaNet value heads (the recurrent layers of a hybrid model, Qwen3.5) are not heads: their
zero-ablation is a separate intervention, :func:`ablated_deltanet` (``eng.ablated_deltanet``), that
composes with the head interventions above (docs/qwen35.md).

Interventions compose with taps and generation. Leaving the block restores the previous state,
and with no interventions the outputs are bit-identical to the unablated engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from corehead.engine import Engine

METHODS = ("zero", "mean", "knockout")


def head_list(heads, n_layer: int, n_head: int) -> list[tuple[int, int]]:
    """(layer, head) pairs from a HeadSet, a list of pairs, or a HeadRanking slice; validated."""
    if hasattr(heads, "ram") and hasattr(heads, "top"):
        raise TypeError("pass a set of heads (e.g. ranking.top(0.05)), not a whole HeadRanking")
    out = []
    for item in heads:
        try:
            layer, head = item
        except (TypeError, ValueError):
            raise TypeError(f"heads must be (layer, head) pairs, got {item!r}") from None
        if isinstance(layer, bool) or isinstance(head, bool) or not isinstance(layer, (int, np.integer)) \
                or not isinstance(head, (int, np.integer)):
            raise TypeError(f"heads must be (layer, head) pairs of ints, got {item!r}")
        if not 0 <= layer < n_layer:
            raise ValueError(f"layer {layer} is out of range [0, {n_layer})")
        if not 0 <= head < n_head:
            raise ValueError(f"head {head} is out of range [0, {n_head})")
        out.append((int(layer), int(head)))
    if len(set(out)) != len(out):
        raise ValueError("a head is listed more than once")
    return out


def head_means(eng: Engine, prompts: Iterable) -> np.ndarray:
    """Mean output of every head over all positions of `prompts` — text, token ids or
    :class:`corehead.Probe` objects (their prompt with the image, visual positions included):
    ``[n_layer, n_head, head_dim]`` float32."""
    from corehead.probes import Probe, probe_media
    from corehead.ram import probe_prompt

    info = eng.info
    total, count = None, 0
    for p in prompts:
        if isinstance(p, Probe) and (p.image is not None or p.video is not None):
            arr, n = eng.head_output_sums(probe_prompt(eng, p), images=probe_media(eng, p))
        else:
            arr, n = eng.head_output_sums(probe_prompt(eng, p) if isinstance(p, Probe) else p)
        total = arr if total is None else total + arr
        count += n
    if total is None or count == 0:
        raise ValueError("mean ablation needs a non-empty reference set of prompts")
    # Sums come as [n_layer][hd, n_head] (ggml order): head-major after the reshape below.
    hd = total.shape[1] // info["n_head"]
    return (total / count).reshape(info["n_layer"], info["n_head"], hd).astype(np.float32)


def reference_key(reference: Sequence) -> tuple:
    """A hashable identity of a reference set (prompt texts, ids, and image contents)."""
    import hashlib

    from corehead.images import load_images
    from corehead.probes import Probe

    key = []
    for p in reference:
        if isinstance(p, Probe):
            digest = ""
            if p.image is not None:
                (img,) = load_images([p.image])
                digest = hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest() + str(img.shape)
            elif p.video is not None:  # the sampled clip: its frames, timestamps and rate
                from corehead.videos import load_video

                v = load_video(p.video, fps=p.fps, max_frames=p.max_frames)
                frames = np.asarray(p.video) if isinstance(p.video, np.ndarray) else None
                digest = "video:" + (hashlib.sha1(frames.tobytes()).hexdigest() if frames is not None else
                                     str(p.video)) + f"{v.n_frames}:{v.fps}:{v.timestamps}"
            key.append(("probe", p.prompt, p.question, digest))
        elif isinstance(p, str):
            key.append(p)
        else:
            key.append(tuple(int(t) for t in p))
    return tuple(key)


@contextmanager
def ablated(eng: Engine, heads, method: str = "zero", reference: Sequence | None = None,
            knockout_keys: Sequence[int] = (), means: np.ndarray | None = None, queries: str = "after"):
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r} (use one of {', '.join(METHODS)})")
    info = eng.info
    pairs = head_list(heads, info["n_layer"], info["n_head"])
    if len(pairs) == info["n_layer"] * info["n_head"] and method != "knockout":
        # Documented: allowed, the model then sees no attention output at all.
        pass
    if method == "mean":
        if means is None:
            if reference is None:
                raise ValueError("method='mean' needs reference= prompts (or probes) to average the heads' "
                                 "outputs over")
            means = eng.head_means(reference, cached=True)
        want = (info["n_layer"], info["n_head"], info["n_embd"] // info["n_head"])
        means = np.asarray(means, dtype=np.float32)
        if means.ndim != 3 or means.shape[:2] != want[:2]:
            raise ValueError(f"means must have shape [n_layer, n_head, head_dim] = {list(want)}, "
                             f"got {list(means.shape)}")
    else:
        means = None
    items = [(layer, h, method, means[layer, h].tolist() if means is not None else []) for layer, h in pairs]
    with eng.interventions(items, knockout_keys, queries=queries):
        yield eng


def deltanet_value_heads(value_heads) -> list[tuple[int, int]]:
    """(layer, value head) pairs of ints from any iterable of pairs; ranges are checked by the engine."""
    if isinstance(value_heads, (str, bytes)) or not isinstance(value_heads, Iterable):
        raise TypeError(f"value_heads must be (layer, value head) pairs, got {value_heads!r}")
    out = []
    for item in value_heads:
        try:
            layer, head = item
        except (TypeError, ValueError):
            raise TypeError(f"value_heads must be (layer, value head) pairs, got {item!r}") from None
        if isinstance(layer, bool) or isinstance(head, bool) or not isinstance(layer, (int, np.integer)) \
                or not isinstance(head, (int, np.integer)):
            raise TypeError(f"value_heads must be (layer, value head) pairs of ints, got {item!r}")
        out.append((int(layer), int(head)))
    return out


@contextmanager
def ablated_deltanet(eng: Engine, value_heads):
    """Zero-ablation of Gated DeltaNet value heads for every call inside the block (see
    Engine.ablated_deltanet); the previous set comes back on leaving."""
    pairs = deltanet_value_heads(value_heads)
    previous = eng.active_deltanet_ablation
    eng._set_deltanet_ablation(pairs)  # validated by the engine: ValueError naming the valid pairs
    try:
        yield eng
    finally:
        eng._set_deltanet_ablation(previous)
