"""Attention knockout along chosen (query, key) edges, and the cross-modal information-flow
analysis built on it (Zhang et al., "Cross-modal Information Flow in Multimodal LLMs", CVPR 2025;
Geva et al., "Dissecting Recall of Factual Associations", EMNLP 2023).

    with eng.knockout([("last", "image")], layers=range(4, 13), prompt=prompt, images=[img]):
        eng.logits(prompt, images=[img])

An edge set is a list of (queries, keys) pairs; each side is

- a named span of the prompt: ``"image"`` (every visual token), ``"image:i"`` (image i's),
  ``"question"`` (the tokens overlapping `question`'s text in the prompt), ``"last"`` (the last
  prompt position), ``"text"`` (every non-visual token);
- ``Chars(start, end)``: the tokens overlapping a character span of the prompt;
- positions: an int or a sequence of ints (negative values count from the end of the prompt);

or the whole edge set is a boolean mask ``[n_tokens, n_tokens]`` (``mask[q, k]`` = block query q
from key k), or a preset name (:data:`PRESETS`). For every chosen head (``heads=None``: all heads
of `layers`; ``layers=None``: every layer) the blocked entries get −inf in its attention mask
before the softmax, on the main path and the taps alike; the tokens generated after the prompt
keep the knockout (their own queries are not blocked, the edges are positions of the prompt).
Queries of a knocked head left with no visible key give that head no output at that position.

:func:`information_flow` runs the paper's experiment: for each preset the edges are blocked in a
window of `window` layers (default 9) around each layer ℓ (clipped at the ends of the model:
layers ``max(0, ℓ - window // 2)`` to ``min(n_layer, ℓ - window // 2 + window) - 1``), and the
metric is the relative change of the probability of the answer's first token at the last
prompt position, in percent: ``100 * (p_knocked - p) / p``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from corehead.engine import Engine

# Information flows from the keys to the queries: "Image->Question" = the question tokens may not
# read the image tokens.
PRESETS: dict[str, tuple[str, str]] = {
    "Image->Question": ("question", "image"),
    "Image->Last": ("last", "image"),
    "Question->Last": ("last", "question"),
}


@dataclass(frozen=True)
class Chars:
    """The tokens overlapping the characters [start, end) of the prompt."""

    start: int
    end: int


@dataclass
class Layout:
    """Where things are in one prompt: its length, each image's visual positions, and the
    question's positions (None when no question text was given)."""

    n: int
    images: list[np.ndarray]
    prompt: str | None = None
    question: np.ndarray | None = None
    char_positions: Any = None  # callable (start, end) -> positions
    known: bool = True  # n is the prompt's length (False: only the context's size, no prompt given)

    def visual(self) -> np.ndarray:
        return np.concatenate(self.images) if self.images else np.zeros(0, np.int64)


def prompt_layout(eng: Engine, prompt, images: Sequence = (), question: str | None = None) -> Layout:
    """The :class:`Layout` of `prompt` (text or token ids) with `images`."""
    imgs = eng.load_images(images)
    if imgs:
        ids = np.asarray(eng.multimodal_tokens(prompt, imgs))
        vis = np.asarray(eng.visual_token_positions(prompt, imgs), np.int64)
        sizes = [len(eng.visual_token_boxes(img)) for img in imgs]  # an image's tokens come together
        per, at = [], 0
        for s in sizes:
            per.append(vis[at:at + s])
            at += s
    else:
        ids = np.asarray(eng.token_ids(prompt))
        per = []
    lay = Layout(len(ids), per, prompt if isinstance(prompt, str) else None)
    if lay.prompt is not None:
        lay.char_positions = lambda s, e: _char_positions(eng, lay.prompt, imgs, ids, s, e)
    if question is not None:
        if lay.prompt is None:
            raise TypeError("question= needs the prompt as text")
        # The question's last occurrence after the last image marker (chat templates put it there).
        start = lay.prompt.rfind(question) if question else -1
        if start < 0:
            raise ValueError(f"the question {question!r} does not appear in the prompt")
        lay.question = lay.char_positions(start, start + len(question))
    return lay


def _lcp(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if len(diff) else n


def _char_positions(eng: Engine, prompt: str, imgs: list, ids: np.ndarray, start: int, end: int) -> np.ndarray:
    """Token positions of `prompt` (images expanded) overlapping its characters [start, end):
    from the tokenizations of the prefixes prompt[:start] and prompt[:end] (a token straddling
    a boundary counts as overlapping)."""
    if not 0 <= start < end <= len(prompt):
        raise ValueError(f"character span ({start}, {end}) is not inside the prompt ({len(prompt)} chars)")

    def prefix_ids(k: int) -> np.ndarray:
        text = prompt[:k]
        n_img = text.count(eng.image_marker) if imgs else 0
        if imgs and n_img == 0 and prompt.count(eng.image_marker) == 0:
            n_img = len(imgs)  # a prompt without markers has its images first
        if n_img:
            return np.asarray(eng.multimodal_tokens(text, imgs[:n_img]))
        return np.asarray(eng.tokenize(text)) if text else np.zeros(0, np.int64)

    a = _lcp(prefix_ids(start), ids)
    pe = prefix_ids(end)
    b = _lcp(pe, ids)
    if len(pe) > b:  # the token at b runs past `end`
        b += 1
    return np.arange(a, max(a, b), dtype=np.int64)


def _positions(spec, lay: Layout) -> np.ndarray:
    if isinstance(spec, str):
        name = spec.strip()
        if name == "image":
            if not lay.images:
                raise ValueError("'image' needs a prompt with images (pass prompt= and images=)")
            return lay.visual()
        if name.startswith("image:"):
            try:
                i = int(name[6:])
            except ValueError:
                raise ValueError(f"bad span name {spec!r} (use 'image:0', 'image:1', ...)") from None
            if not 0 <= i < len(lay.images):
                raise ValueError(f"{spec!r}: the prompt has {len(lay.images)} image(s)")
            return lay.images[i]
        if name == "last":
            return np.array([lay.n - 1], np.int64)
        if name == "text":
            return np.setdiff1d(np.arange(lay.n), lay.visual())
        if name == "question":
            if lay.question is None:
                raise ValueError("'question' needs question= (the question's text in the prompt)")
            return lay.question
        raise ValueError(f"unknown span name {spec!r} (use 'image', 'image:i', 'question', 'last' or 'text')")
    if isinstance(spec, Chars):
        if lay.char_positions is None:
            raise ValueError("a character span needs the prompt as text (pass prompt=)")
        return lay.char_positions(spec.start, spec.end)
    if isinstance(spec, (bool, np.bool_)):
        raise TypeError("positions must be ints, not bools")
    arr = np.atleast_1d(np.asarray(spec))
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise TypeError(f"positions must be ints, a span name or Chars(start, end), got {spec!r}")
    arr = arr.astype(np.int64)
    if not lay.known and (arr < 0).any():
        raise ValueError("negative positions count from the end of the prompt: pass prompt=")
    bad = (arr < -lay.n) | (arr >= lay.n)
    if bad.any():
        raise ValueError(f"position {int(arr[bad][0])} is out of range for a prompt of {lay.n} tokens")
    return arr % lay.n


def edge_mask(edges, lay: Layout) -> np.ndarray:
    """The blocked (query, key) entries of `edges` as a boolean [n, n] mask."""
    n = lay.n
    if isinstance(edges, str):
        if edges not in PRESETS:
            raise ValueError(f"unknown preset {edges!r} (use one of {', '.join(PRESETS)})")
        edges = [PRESETS[edges]]
    if isinstance(edges, np.ndarray) and edges.dtype == bool:
        if edges.shape != (n, n):
            raise ValueError(f"an edge mask must be [n_tokens, n_tokens] = [{n}, {n}], got {list(edges.shape)}")
        return edges.copy()
    if isinstance(edges, tuple) and len(edges) == 2 and not isinstance(edges[0], tuple):
        edges = [edges]
    mask = np.zeros((n, n), bool)
    for pair in edges:
        if isinstance(pair, str) and pair in PRESETS:
            pair = PRESETS[pair]
        try:
            q, k = pair
        except (TypeError, ValueError):
            raise TypeError(f"edges must be (queries, keys) pairs, a preset name or a boolean mask; got {pair!r}") \
                from None
        mask[np.ix_(_positions(q, lay), _positions(k, lay))] = True
    return mask


def mask_to_ranges(mask: np.ndarray) -> tuple[list[int], list[int], list[int]]:
    """Per key, its blocked queries as runs: (keys, from, until), a key once per run."""
    keys, start, until = [], [], []
    for k in np.nonzero(mask.any(0))[0]:
        col = np.concatenate([[False], mask[:, k], [False]]).astype(np.int8)
        d = np.diff(col)
        for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]):
            keys.append(int(k))
            start.append(int(a))
            until.append(int(b))
    return keys, start, until


def _layers(layers, n_layer: int) -> list[int]:
    if layers is None:
        return list(range(n_layer))
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, bool):
        layers = [layers]
    out = []
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise TypeError(f"layers must be ints, got {layer!r}")
        if not 0 <= layer < n_layer:
            raise ValueError(f"layer {layer} is out of range [0, {n_layer})")
        out.append(int(layer))
    return sorted(set(out))


def knocked_heads(eng: Engine, heads=None, layers=None) -> list[tuple[int, int]]:
    """(layer, head) pairs: `heads` (within `layers` when both are given), or every head of `layers`
    (of those that have heads: a hybrid model's Gated DeltaNet layers have none, so a window of
    layers knocks the heads of its attention layers)."""
    from corehead.ablation import head_list

    info = eng.info
    lay = _layers(layers, info["n_layer"])
    if heads is None:
        with_heads = set(info.get("attention_layers") or range(info["n_layer"]))
        return [(layer, h) for layer in lay if layer in with_heads for h in range(info["n_head"])]
    keep = set(lay)
    return [(layer, h) for layer, h in head_list(heads, info["n_layer"], info["n_head"]) if layer in keep]


@contextmanager
def knockout(eng: Engine, edges, heads=None, layers=None, prompt=None, images: Sequence = (),
             question: str | None = None):
    """Block `edges` for `heads` / `layers` in every call inside the block (see the module doc).
    Named spans and character spans are resolved on `prompt` (with `images`) once, here."""
    if prompt is None:
        if not (isinstance(edges, np.ndarray) and edges.dtype == bool) and not _positions_only(edges):
            raise ValueError("named or character spans need prompt= (and images= for 'image')")
        is_mask = isinstance(edges, np.ndarray) and edges.dtype == bool
        lay = Layout(int(edges.shape[0]) if is_mask else int(eng.info["n_ctx"]), [], known=is_mask)
    else:
        lay = prompt_layout(eng, prompt, images, question)
    mask = edge_mask(edges, lay)
    keys, start, until = mask_to_ranges(mask)
    items = [(layer, h, "knockout", []) for layer, h in knocked_heads(eng, heads, layers)]
    if not keys:
        items = []  # nothing blocked: the unablated graph
    with eng.interventions(items, keys, start, until):
        yield eng


def _positions_only(edges) -> bool:
    if isinstance(edges, str):
        return False
    if isinstance(edges, tuple) and len(edges) == 2 and not isinstance(edges[0], tuple):
        edges = [edges]
    try:
        return all(not isinstance(s, (str, Chars)) for pair in edges for s in pair)
    except TypeError:
        return False


# --- the information-flow experiment ---------------------------------------------------------------


def layer_windows(n_layer: int, window: int = 9) -> list[range]:
    """For each layer ℓ, the window of layers around it (clipped at both ends)."""
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    lo = [max(0, i - window // 2) for i in range(n_layer)]
    return [range(a, min(n_layer, i - window // 2 + window)) for i, a in enumerate(lo)]


@dataclass
class FlowResult:
    """Relative change (%) of the answer's first-token probability per preset and window.

    ``change[name][ℓ]``: with `name`'s edges blocked in ``windows[ℓ]``; ``prob``: the probability
    without knockout; ``token``: the answer's first token."""

    presets: list[str]
    windows: list[range]
    change: dict[str, np.ndarray]
    prob: float
    token: int
    probs: dict[str, np.ndarray] = field(default_factory=dict)

    def table(self) -> str:
        head = f"{'layer':>5} {'window':>9} " + " ".join(f"{p:>15}" for p in self.presets)
        rows = [head]
        for i, w in enumerate(self.windows):
            cells = " ".join(f"{self.change[p][i]:>14.2f}%" for p in self.presets)
            rows.append(f"{i:>5} {f'{w.start}-{w.stop - 1}':>9} {cells}")
        return "\n".join(rows)

    def plot(self, path: str | Path, title: str | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        x = np.arange(len(self.windows))
        for p in self.presets:
            ax.plot(x, self.change[p], marker="o", label=p)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("layer (centre of the knocked-out window)")
        ax.set_ylabel("relative change of P(answer) (%)")
        ax.set_title(title or f"attention knockout, p = {self.prob:.3g}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def first_answer_token(eng: Engine, prompt: str, answer: str, images: Sequence = ()) -> tuple[int, int]:
    """(row, token): the answer's first token after `prompt` and the prompt position predicting it
    (the common prefix of the prompt's and prompt + answer's tokens, so a merge is handled)."""
    from corehead.evaluate import choice_plan

    base, ((k, full),) = choice_plan(eng, prompt, [answer], images)
    if k == 0:
        raise ValueError("the answer's first token would be the first of the prompt")
    return k - 1, int(full[k])


def information_flow(eng: Engine, probe, presets: Iterable[str] | None = None, window: int = 9,
                     progress: bool = False) -> FlowResult:
    """The information-flow curves of one probe (see the module doc). The probe needs an answer
    and, for the Question presets, its question text in the prompt."""
    from corehead.ram import probe_prompt

    names = list(PRESETS) if presets is None else list(presets)
    for p in names:
        if p not in PRESETS:
            raise ValueError(f"unknown preset {p!r} (use one of {', '.join(PRESETS)})")
    if not probe.answer:
        raise ValueError("information_flow needs a probe with an answer")
    prompt = probe_prompt(eng, probe)
    from corehead.probes import probe_media

    images = probe_media(eng, probe)
    row, tok = first_answer_token(eng, prompt, probe.answer, images)
    lay = prompt_layout(eng, prompt, images, probe.question if probe.question else None)

    def prob() -> float:
        lg = eng.logits(prompt, images=images, positions=[row])[0].astype(np.float64)
        lg = lg - lg.max()
        return float(np.exp(lg[tok]) / np.exp(lg).sum())

    with eng.interventions([]):
        p0 = prob()
    windows = layer_windows(eng.info["n_layer"], window)
    change, probs = {}, {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names) * len(windows), desc="knockout", unit="run")
    try:
        for name in names:
            keys, start, until = mask_to_ranges(edge_mask(name, lay))
            ps = []
            for w in windows:
                items = [(layer, h, "knockout", []) for layer, h in knocked_heads(eng, None, w)]
                with eng.interventions(items if keys else [], keys, start, until):
                    ps.append(prob())
                if bar is not None:
                    bar.update(1)
            probs[name] = np.array(ps)
            change[name] = 100.0 * (probs[name] - p0) / p0
    finally:
        if bar is not None:
            bar.close()
    return FlowResult(names, windows, change, p0, tok, probs)
