"""CoRe-sparse visual attention (docs/architecture.md §6): a head-grouped KV cache in which only the CoRe KV
heads keep the visual tokens.

    eng = Engine("model.gguf", mmproj="mmproj.gguf", core_heads="heads.json")  # from `corehead rank`
    with eng.sparse(ranking.top(0.1), visual_budget=16):
        eng.generate(prompt, images=frames)
    eng.kv_stats()

What the cache holds, per layer:

- a *full* part for the CoRe KV heads: every token;
- a *compact* part for the other KV heads: the text tokens, the first ``sink`` tokens of the
  sequence, and (``visual_budget`` > 0) that many visual tokens of every image per head, chosen
  SnapKV-style by the attention of the last prompt rows (the last ≤ 16 rows of the last prefill
  batch, summed over the rows and the KV head's query heads, top ``visual_budget`` per image).

An image chunk (the visual tokens of one image: all its views and tiles; of a video: one frame,
or one temporal patch of two frames for Qwen-VL) is prefilled densely: every head sees it while it
is encoded. After the chunk, the non-CoRe heads no longer see its tokens (sinks excepted) —
neither the text nor the next frames do — and they are removed from the compact part: when
``visual_budget == 0``, at the end of the prefill batch in which the chunk ends (batches run
``n_batch`` rows across chunks; within a batch the masks hide a finished chunk from the later
rows), so memory never holds more than one chunk plus one batch of non-CoRe visual tokens; at the
end of the prompt otherwise, once the budget tokens are picked (so with a budget the compact part
briefly holds every token during prefill, and the text of the prompt itself sees no budget
tokens; decoding does). Queries are gathered per group and the outputs scattered back to the
original head order before the output projection; weights are used as stored.

With ``visual_budget == 0`` the logits equal a dense run in which the non-CoRe heads' visual
keys (sinks excepted) are masked with −inf for every query after their chunk: :func:`masked_reference`
sets that up with the knockout intervention, and tests/test_sparse.py checks it on every fixture.

Head sets: CoRe heads are query heads (layer, head); under GQA a KV head is CoRe when any of its
query heads is (the KV head's score is the max of its query heads', docs/architecture.md §4).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from corehead.engine import Engine

HEADSET_FORMAT = "corehead.HeadSet/1"


def _check_int(value, name: str, low: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


VISUAL_KEEP = ("snapkv", "first", "last")


def check_options(visual_budget, sink, visual_keep: str = "snapkv") -> tuple[int, int]:
    if visual_keep not in VISUAL_KEEP:
        raise ValueError(f"visual_keep must be one of {VISUAL_KEEP}, got {visual_keep!r}")
    return _check_int(visual_budget, "visual_budget"), _check_int(sink, "sink")


def _model_facts(info: dict) -> dict:
    return {k: info.get(k) for k in ("arch", "name", "n_layer", "n_head", "n_head_kv", "n_embd")}


def save_heads(path: str | os.PathLike, heads, info: dict) -> None:
    """Write a head set (query heads) as JSON for `info`'s model (``eng.info``)."""
    pairs = _query_heads(heads, info)
    data = {"format": HEADSET_FORMAT, "model": _model_facts(info), "n_head": info["n_head"],
            "n_head_kv": info["n_head_kv"], "heads": [list(p) for p in pairs]}
    Path(path).write_text(json.dumps(data, indent=1))


def _load(path: Path, info: dict, fraction: float):
    from corehead.ram import HeadRanking, HeadSet

    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such head file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a head file (JSON expected: {e})") from None
    fmt = d.get("format") if isinstance(d, dict) else None
    if fmt == "corehead.HeadRanking/1":
        ranking = HeadRanking.load(path)
        ranking.check_model(info)
        return ranking.top(fraction)
    if fmt == HEADSET_FORMAT:
        model = d.get("model") or {}
        for key in ("arch", "name", "n_layer", "n_head", "n_head_kv", "n_embd"):
            if key in model and model[key] is not None and info.get(key) is not None and model[key] != info[key]:
                raise ValueError(f"{path}: this head set was made for a model with {key} = {model[key]!r}, "
                                 f"not {info[key]!r} (it belongs to another model)")
        try:
            pairs = [(int(a), int(b)) for a, b in d["heads"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: 'heads' must be a list of [layer, head] pairs") from None
        return HeadSet(pairs, d.get("n_head"), d.get("n_head_kv"))
    raise ValueError(f"{path}: not a corehead head file (expected a HeadRanking from `corehead rank` or a HeadSet)")


def _query_heads(heads, info: dict, fraction: float = 0.05) -> list[tuple[int, int]]:
    """Validated (layer, query head) pairs from any accepted form of `heads`."""
    from corehead.ablation import head_list
    from corehead.ram import HeadRanking, HeadSet

    if isinstance(heads, (str, os.PathLike)):
        heads = _load(Path(heads), info, fraction)
    elif isinstance(heads, HeadRanking):
        heads.check_model(info)
        heads = heads.top(fraction)
    if isinstance(heads, HeadSet):
        for name in ("n_head", "n_head_kv"):
            mine = getattr(heads, name)
            if mine is not None and mine != info[name]:
                raise ValueError(f"this head set was made for a model with {name} = {mine}, not {info[name]} "
                                 "(it belongs to another model)")
    if not isinstance(heads, Iterable):
        raise TypeError(f"core heads must be a head file path, a HeadSet, a HeadRanking or (layer, head) pairs, "
                        f"got {type(heads).__name__}")
    pairs = head_list(heads, info["n_layer"], info["n_head"])
    if not pairs:
        raise ValueError("the CoRe head set is empty: give at least one (layer, head), e.g. ranking.top(0.05)")
    return pairs


def kv_source_layers(info: dict) -> list[int]:
    """For each layer, the layer whose K/V it attends over: itself, or under KV sharing (Gemma 4)
    an earlier layer's, whose KV cache it reads instead of holding one."""
    src = info.get("kv_source_layers")
    return [int(s) for s in src] if src else list(range(info["n_layer"]))


def kv_layers(info: dict) -> list[int]:
    """The layers that hold a KV cache: every layer, except those that read another layer's K/V
    (KV sharing, Gemma 4) and a hybrid model's recurrent layers (no attention, qwen35)."""
    attention = set(info.get("attention_layers") or range(info["n_layer"]))
    return [layer for layer, s in enumerate(kv_source_layers(info)) if s == layer and layer in attention]


def layer_head_dims(info: dict) -> list[int]:
    """Each layer's head size (Gemma 4: its global layers' heads are larger)."""
    dims = info.get("layer_head_dims")
    return [int(d) for d in dims] if dims else [int(info["head_dim"])] * info["n_layer"]


def core_kv_heads(heads, info: dict, fraction: float = 0.05) -> list[tuple[int, int]]:
    """The (layer, KV head) pairs of the CoRe heads `heads` — a head file (HeadRanking JSON from
    ``corehead rank``: its top `fraction`; or a HeadSet JSON), a HeadRanking (top `fraction`), a
    HeadSet or (layer, query head) pairs — checked against the model described by `info`. Under KV
    sharing a pair names the layer that holds the K/V (one visual KV set per shared KV head: a CoRe
    head of a sharing layer keeps that set for every layer reading it)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"core_fraction must be in (0, 1], got {fraction}")
    group = info["n_head"] // info["n_head_kv"]
    src = kv_source_layers(info)
    return sorted({(src[layer], h // group) for layer, h in _query_heads(heads, info, fraction)})


@contextmanager
def sparse(eng: Engine, heads, visual_budget: int = 0, sink: int = 4, core_fraction: float = 0.05,
           visual_keep: str = "snapkv"):
    """Run the block on the CoRe-sparse cache; the previous cache mode comes back afterwards.
    `visual_keep` picks the visual_budget tokens: "snapkv", or the "first" / "last" of each image."""
    budget, sink = check_options(visual_budget, sink, visual_keep)
    kv = core_kv_heads(heads, eng.info, core_fraction)
    with eng.kv_mode(kv, sink, budget, visual_keep):
        yield eng


def kv_stats(eng: Engine) -> dict:
    """Bytes the KV cache holds now, per group: see :meth:`Engine.kv_stats`."""
    return eng.kv_stats()


def time_generation(eng: Engine, prompt, images: Sequence, n_gen: int) -> dict:
    """One greedy generation of exactly `n_gen` tokens: time to first token (s), decode speed
    (tokens/s after the first) and the KV bytes held at the end (``kv_stats()["bytes"]``)."""
    import time

    stamps: list[float] = []

    def on_token(_tok: int) -> bool:
        stamps.append(time.perf_counter())
        return True

    t0 = time.perf_counter()
    eng.generate_ids(prompt, max_tokens=n_gen, stop_at_eog=False, on_token=on_token, images=images)
    decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return {"ttft_s": stamps[0] - t0, "decode_tok_s": decode, "kv_bytes": kv_stats(eng)["bytes"]}


def median_generation(eng: Engine, prompt, images: Sequence, n_gen: int, reps: int = 3) -> dict:
    """:func:`time_generation` after one short warm-up run (allocations, the image cache): the
    median of each value over `reps` runs."""
    import statistics

    time_generation(eng, prompt, images, min(4, n_gen))
    runs = [time_generation(eng, prompt, images, n_gen) for _ in range(reps)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def visual_runs(positions: Sequence[int], image_sizes: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """Image chunks [start, end): maximal runs of consecutive visual positions, split where one
    image ends (`image_sizes`: visual tokens per image, in prompt order)."""
    ends, total = set(), 0
    for n in image_sizes or ():
        total += n
        ends.add(total)  # index into `positions` where an image starts
    runs: list[tuple[int, int]] = []
    for i, p in enumerate(sorted(int(x) for x in positions)):
        if runs and runs[-1][1] == p and i not in ends:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


@contextmanager
def masked_reference(eng: Engine, heads, prompt: str, images, sink: int = 4, core_fraction: float = 0.05,
                     visual_budget: int = 0, keep: str | None = None, videos=(), fps: float | None = None,
                     max_frames: int | None = None):
    """On the dense cache, the semantics of the CoRe-sparse mode as masks: every query head of a
    non-CoRe KV head gets −inf on each visual key (the first `sink` positions excepted) for the
    queries after that key's run of visual tokens (knockout interventions with per-key query
    ranges). With a `visual_budget`, the SnapKV choice cannot be written as masks shared by all
    heads: pass ``keep="first"`` or ``"last"`` and run the sparse side with ``visual_keep`` set the
    same way; the kept tokens are then masked only for the rest of the prompt. For checking the
    sparse cache, not for speed. `videos` (after the images, as the prompt orders them when the
    images' markers come first): every frame (Qwen-VL: every temporal patch) is a chunk of its own."""
    info = eng.info
    kv = set(core_kv_heads(heads, info, core_fraction))
    group = info["n_head"] // info["n_head_kv"]
    src = kv_source_layers(info)
    layers = info.get("attention_layers") or range(info["n_layer"])  # a hybrid model's recurrent layers have no heads
    knocked = [(layer, h, "knockout", []) for layer in layers for h in range(info["n_head"])
               if (src[layer], h // group) not in kv]
    if visual_budget and keep not in ("first", "last"):
        raise ValueError("a masked reference with a visual_budget needs keep='first' or 'last'")
    imgs = eng.load_images(images)
    media = dict(videos=list(videos), fps=fps, max_frames=max_frames)
    positions = [int(p) for p in eng.visual_token_positions(prompt, imgs, **media)]
    n_prompt = len(eng.multimodal_tokens(prompt, imgs, **media))
    sizes = [len(eng.visual_token_boxes(img)) for img in imgs]  # an image's tokens come together
    for video in videos:  # a video's tokens come frame by frame (first sampled frame of each token)
        first = [int(f) for f in eng.visual_token_frames(video, fps=fps, max_frames=max_frames)[:, 0]]
        sizes += [sum(1 for _ in g) for _, g in itertools.groupby(first)]
    if visual_budget and videos:
        raise ValueError("a masked reference with a visual_budget takes images only")
    run_end = {}
    for a, b in visual_runs(positions, sizes):
        run_end.update({p: b for p in range(a, b)})
    kept: set[int] = set()
    if visual_budget:
        at = 0
        for n in sizes:
            mine = [p for p in positions[at:at + n] if p >= sink]
            at += n
            kept.update(mine[:visual_budget] if keep == "first" else mine[len(mine) - visual_budget:])
    never = 2**31 - 1
    keys, start, until = [], [], []
    for p in positions:
        if p >= sink:
            keys.append(p)
            start.append(run_end[p])
            until.append(n_prompt if p in kept else never)
    with eng.interventions(knocked, keys, start, until):
        yield eng


def expected_kv_bytes(info: dict, kv_heads: Iterable[tuple[int, int]], n_tokens: int, visual_positions,
                      sink: int = 4, visual_budget: int = 0, n_images: int = 0, bytes_per_value: int = 2) -> int:
    """The formula: per layer that holds a KV cache, text tokens × all KV heads + visual tokens ×
    CoRe KV heads + (visual sinks + visual_budget × images) × other KV heads; × its head size × 2
    (K and V) × bytes. `kv_heads` as core_kv_heads gives them (layers holding the K/V). Layers that
    read another's K/V (Gemma 4) or have no attention (a hybrid model's recurrent ones) hold none."""
    core = np.zeros(info["n_layer"], np.int64)
    for layer, _ in kv_heads:
        core[layer] += 1
    own = np.zeros(info["n_layer"], np.int64)
    own[kv_layers(info)] = 1
    vis = np.asarray(visual_positions, np.int64)
    n_visual = len(vis)
    n_sink = int((vis < sink).sum())
    n_text = n_tokens - n_visual
    other = info["n_head_kv"] - core
    per_layer = (n_text * info["n_head_kv"] + n_visual * core + (n_sink + visual_budget * n_images) * other) * own
    return int((per_layer * np.asarray(layer_head_dims(info), np.int64)).sum()) * 2 * bytes_per_value


def dense_kv_bytes(info: dict, n_tokens: int, bytes_per_value: int = 2) -> int:
    """K and V of `n_tokens` tokens in the dense cache: every KV head of every layer holding one."""
    dims = layer_head_dims(info)
    return n_tokens * info["n_head_kv"] * sum(dims[layer] for layer in kv_layers(info)) * 2 * bytes_per_value
