"""Retrieval Attention Mass (RAM) and the ranking of CoRe heads (docs/architecture.md §4).

Definitions, exactly as computed here:

- relevance r_j ∈ [0, 1] of visual token j = area(token rectangle ∩ target region) / area(token
  rectangle); the target region is the probe's box(es) (union) or mask, in original-image pixels;
  token rectangles come from :meth:`Engine.visual_token_boxes`. For a text probe, r_j = 1 on the
  tokens overlapping the target character span, else 0 ("visual" tokens are then all prompt tokens).
- a video probe with per-frame boxes (spatio-temporal target, :class:`corehead.Probe`): a token
  showing sampled frames f0 .. f1 (:meth:`Engine.visual_token_frames`; Qwen-VL's temporal patch:
  two frames) has r_j = mean over its two frame slots (f0, f1) of area(token ∩ boxes of that
  frame) / area(token), i.e. the fraction of the token's space-time volume (rectangle x frames)
  inside the target; a frame without boxes contributes 0.
- query set Q: with ``query="answer"`` the answer is teacher-forced after the prompt and Q holds the
  positions that predict the answer tokens; with ``query="last"`` Q = {last prompt position}.
- per probe, for layer l and head h: RAM = mean_{t∈Q} Σ_j r_j · A[l,h][t,j] and visual mass
  VM = mean_{t∈Q} Σ_{j visual} A[l,h][t,j]; also the chance level c = Σ_j r_j / n_visual.
- dataset scores are means over probes: RAM, VM and c; focus = RAM / VM and
  lift = focus / c, both taken on the dataset means (ratios of means). ``only_correct=True``
  averages over the probes the model answers correctly (greedy, normalized exact match).
- CoRe heads = the top ``fraction`` (default 5%) of query heads by RAM (at least one head).
  Under GQA a KV head's score is the max of its query heads' scores.

Two other head scores come from the same tapped pass (the full attention rows of Q), with the
target set R = {j : r_j > 0} and k*(l,h,t) = argmax_j A[l,h][t,j] (over all keys):

- ``visual`` (SparseMM, Wang et al. 2025): per probe mean_{t∈Q} [k* ∈ R] / |R|, a top-1 "hit" on
  the target region weighted by 1/|R| so that large regions do not win by size.
- ``retrieval`` (the copy score of Wu et al. 2024, "Retrieval Head Mechanistically Explains
  Long-Context Factuality"): per probe mean_{t∈Q} [k* ∈ R and id(k*) = y_t], y_t the token that
  position t predicts: the head's top key is the very token being copied out of the needle. It is
  0 for image probes (an image token is never a copy of a text token).
- a callable ``score(view: ProbeAttention) -> [n_layer, n_head]``, averaged over probes.

``rank_heads(score=...)`` chooses the one that orders the heads; all of them are kept, as means
and per probe (``HeadRanking.per_probe``), for :func:`corehead.compare`.

Attention comes from corehead's taps: per layer the tapped rows' probabilities are reduced on
the graph against [relevance; visual indicator], so only [2, |Q|, n_head] numbers per layer reach
the host.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from corehead.probes import Probe, box_relevance, clip_boxes, mask_relevance
from corehead.progress import prompt_progress

if TYPE_CHECKING:
    from corehead.engine import Engine

DEFINITION = ("RAM[l,h] = mean_probes mean_{t in Q} sum_j r_j A[l,h][t,j]; r_j = area(token_j ∩ target)/area(token_j); "
              "VM = same with r_j = 1 on visual tokens; focus = RAM/VM; lift = focus/mean_probes(sum_j r_j/n_visual); "
              "visual = mean_probes mean_t [argmax_j A[t,j] in R]/|R|; retrieval = mean_probes mean_t "
              "[argmax_j A[t,j] in R and id(argmax) = y_t]; R = {j: r_j > 0}")
BUILTIN_SCORES = ("ram", "visual", "retrieval")


class HeadSet(list):
    """A list of (layer, head) query heads; ``kv_heads()`` maps them to KV heads (GQA)."""

    def __init__(self, heads: Iterable[tuple[int, int]] = (), n_head: int | None = None,
                 n_head_kv: int | None = None) -> None:
        super().__init__((int(layer), int(h)) for layer, h in heads)
        self.n_head = n_head
        self.n_head_kv = n_head_kv

    def kv_heads(self) -> list[tuple[int, int]]:
        """Distinct (layer, kv_head) pairs covering these query heads, in order of first appearance."""
        if not self.n_head or not self.n_head_kv:
            raise ValueError("this HeadSet does not know the model's head counts")
        group = self.n_head // self.n_head_kv
        seen: dict[tuple[int, int], None] = {}
        for layer, h in self:
            seen.setdefault((layer, h // group), None)
        return list(seen)


@dataclass
class HeadRanking:
    """Head scores per (layer, head), averaged over probes. Arrays are ``[n_layer, n_head]``: one
    row per layer with attention heads, ``layers`` naming the model layer of each row (None: row
    i is layer i; a hybrid model such as Qwen3.5 has rows for its attention layers only).

    ``score`` names the score that orders the heads (``order``, ``top``, ``bottom``, ``kv_scores``):
    "ram" (default), "visual", "retrieval" or a custom score's name in ``extra``. ``per_probe``
    maps score names to ``[n_probes, n_layer, n_head]`` arrays (what :func:`corehead.compare`
    bootstraps over); rankings made before it existed load with it empty."""

    ram: np.ndarray
    visual_mass: np.ndarray
    chance: float
    n_probes: int
    n_head_kv: int
    model: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    visual: np.ndarray | None = None
    retrieval: np.ndarray | None = None
    score: str = "ram"
    extra: dict = field(default_factory=dict)
    per_probe: dict = field(default_factory=dict)
    layers: list[int] | None = None

    def __post_init__(self) -> None:
        if self.layers is not None:
            self.layers = [int(x) for x in self.layers]
            if len(self.layers) != self.ram.shape[0] or sorted(set(self.layers)) != self.layers:
                raise ValueError(f"layers must name the {self.ram.shape[0]} rows' layers in ascending order, "
                                 f"got {self.layers}")
        if self.score not in self.scores():
            raise ValueError(f"score {self.score!r} is not in this ranking (it has {', '.join(self.scores())})")

    def scores(self) -> dict[str, np.ndarray]:
        """Every score this ranking holds, by name (``[n_layer, n_head]`` each)."""
        out = {"ram": self.ram}
        if self.visual is not None:
            out["visual"] = self.visual
        if self.retrieval is not None:
            out["retrieval"] = self.retrieval
        out.update(self.extra)
        return out

    @property
    def values(self) -> np.ndarray:
        """The ``[n_layer, n_head]`` scores that order the heads (``self.score``)."""
        return self.scores()[self.score]

    def by(self, score: str) -> HeadRanking:
        """The same ranking ordered by another of its scores."""
        return replace(self, score=score)

    @property
    def focus(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.visual_mass > 0, self.ram / self.visual_mass, 0.0)

    @property
    def lift(self) -> np.ndarray:
        return self.focus / self.chance if self.chance > 0 else np.zeros_like(self.ram)

    @property
    def n_layer(self) -> int:
        """Rows: the layers with heads."""
        return self.ram.shape[0]

    @property
    def layer_ids(self) -> list[int]:
        """The model layer of each row."""
        return list(range(self.n_layer)) if self.layers is None else list(self.layers)

    def row_of(self, layer: int) -> int:
        """The row of model layer `layer`."""
        return self.layer_ids.index(layer)

    @property
    def n_head(self) -> int:
        return self.ram.shape[1]

    def order(self) -> list[tuple[int, int]]:
        """All query heads, best score first (ties broken by layer, then head)."""
        flat = self.values.ravel()
        idx = np.lexsort((np.arange(flat.size), -flat))
        ids = self.layer_ids
        return [(ids[int(i) // self.n_head], int(i) % self.n_head) for i in idx]

    def top(self, fraction: float = 0.05) -> HeadSet:
        """The top `fraction` of query heads by the score (rounded up, at least one)."""
        return HeadSet(self.order()[: self._count(fraction)], self.n_head, self.n_head_kv)

    def bottom(self, fraction: float = 0.05) -> HeadSet:
        return HeadSet(self.order()[::-1][: self._count(fraction)], self.n_head, self.n_head_kv)

    def _count(self, fraction: float) -> int:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        return max(1, math.ceil(fraction * self.ram.size - 1e-9))

    def kv_scores(self) -> np.ndarray:
        """[n_layer, n_head_kv]: the max score over each KV head's query heads."""
        group = self.n_head // self.n_head_kv
        return self.values.reshape(self.n_layer, self.n_head_kv, group).max(-1)

    def to_dict(self) -> dict:
        """What :meth:`save` writes (JSON-ready)."""
        return {"format": "corehead.HeadRanking/1", "definition": DEFINITION, "model": self.model,
                "params": self.params, "n_probes": self.n_probes, "n_head_kv": self.n_head_kv, "chance": self.chance,
                "ram": self.ram.tolist(), "visual_mass": self.visual_mass.tolist(),
                "visual": None if self.visual is None else self.visual.tolist(),
                "retrieval": None if self.retrieval is None else self.retrieval.tolist(),
                "extra": {k: v.tolist() for k, v in self.extra.items()}, "score": self.score,
                "per_probe": {k: np.asarray(v).tolist() for k, v in self.per_probe.items()},
                "layers": self.layers,
                "top_5pct": [list(h) for h in self.top(0.05)]}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> HeadRanking:
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a HeadRanking JSON file ({e})") from None
        if not isinstance(d, dict) or d.get("format") != "corehead.HeadRanking/1":
            raise ValueError(f"{path}: not a corehead HeadRanking file")
        ram = np.asarray(d["ram"], dtype=np.float64)
        vm = np.asarray(d["visual_mass"], dtype=np.float64)
        if ram.ndim != 2 or ram.shape != vm.shape:
            raise ValueError(f"{path}: ram/visual_mass must be equal [n_layer, n_head] arrays")

        def grid(value, what: str, lead: tuple = ()) -> np.ndarray | None:
            if value is None:
                return None
            a = np.asarray(value, dtype=np.float64)
            if a.shape[len(lead):] != ram.shape or a.shape[:len(lead)] != lead:
                raise ValueError(f"{path}: {what} must be a {list(lead) + list(ram.shape)} array, got {list(a.shape)}")
            return a

        n_probes = int(d["n_probes"])
        extra = {str(k): grid(v, f"extra[{k!r}]") for k, v in (d.get("extra") or {}).items()}
        per_probe = {str(k): grid(v, f"per_probe[{k!r}]", (n_probes,)) for k, v in (d.get("per_probe") or {}).items()}
        try:
            return cls(ram=ram, visual_mass=vm, chance=float(d["chance"]), n_probes=n_probes,
                       n_head_kv=int(d["n_head_kv"]), model=d.get("model", {}), params=d.get("params", {}),
                       visual=grid(d.get("visual"), "visual"), retrieval=grid(d.get("retrieval"), "retrieval"),
                       score=str(d.get("score", "ram")), extra=extra, per_probe=per_probe, layers=d.get("layers"))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def check_model(self, info: dict) -> None:
        """Raise when this ranking was made for another model (head counts or identity differ)."""
        want_layers = list(info.get("attention_layers") or range(info["n_layer"]))
        if (len(want_layers), info["n_head"]) != self.ram.shape or info["n_head_kv"] != self.n_head_kv or (
                self.layer_ids != want_layers):
            raise ValueError(f"this head ranking is for a model with {self.ram.shape[0]} layers x {self.ram.shape[1]} "
                             f"heads ({self.n_head_kv} KV heads), not {info['n_layer']} x {info['n_head']} "
                             f"({info['n_head_kv']} KV heads)")
        mine = {k: self.model.get(k) for k in ("arch", "name", "n_embd") if k in self.model}
        theirs = {k: info.get(k) for k in mine}
        if mine != theirs:
            raise ValueError(f"this head ranking was made for {mine}, not {theirs}")

    def to_pandas(self):
        import pandas as pd

        others = {k: v for k, v in self.scores().items() if k != "ram"}
        rows = [{"layer": layer, "head": h, "ram": self.ram[r, h], "visual_mass": self.visual_mass[r, h],
                 "focus": self.focus[r, h], "lift": self.lift[r, h],
                 **{k: v[r, h] for k, v in others.items()}}
                for r, layer in enumerate(self.layer_ids) for h in range(self.n_head)]
        return pd.DataFrame(rows).sort_values(self.score, ascending=False, ignore_index=True)

    def table(self, k: int = 10) -> str:
        others = {k: v for k, v in self.scores().items() if k != "ram"}
        head = "".join(f"  {name[:9]:>9s}" for name in others)
        lines = [f" rank  layer  head     RAM     VM   focus   lift{head}",
                 " ----  -----  ----  ------  -----  ------  -----" + "  ---------" * len(others)]
        for i, (layer, h) in enumerate(self.order()[:k], 1):
            r = self.row_of(layer)
            rest = "".join(f"  {v[r, h]:9.4f}" for v in others.values())
            lines.append(f" {i:4d}  {layer:5d}  {h:4d}  {self.ram[r, h]:6.3f}  {self.visual_mass[r, h]:5.3f}  "
                         f"{self.focus[r, h]:6.3f}  {self.lift[r, h]:5.2f}{rest}")
        return "\n".join(lines)

    def plot(self, path: str | Path, fraction: float = 0.05, title: str | None = None) -> None:
        """Layer x head heatmap of the score with the top `fraction` heads outlined."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(max(4, 0.45 * self.n_head + 2), max(3, 0.35 * self.n_layer + 1.5)))
        im = ax.imshow(self.values, cmap="viridis", aspect="auto", origin="lower")
        for layer, h in self.top(fraction):
            r = self.row_of(layer)
            ax.add_patch(plt.Rectangle((h - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(self.n_head))
        ax.set_yticks(range(self.n_layer), [str(x) for x in self.layer_ids])
        name = {"ram": "Retrieval Attention Mass", "visual": "visual-head score (SparseMM)",
                "retrieval": "retrieval (copy) score"}.get(self.score, self.score)
        ax.set_title(title or f"{name} ({self.n_probes} probes; red = top {fraction:.0%})")
        fig.colorbar(im, ax=ax, label=self.score)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


# --- scoring ---------------------------------------------------------------------------------


@dataclass
class ProbeScore:
    """One probe's contribution: partial sums reduced exactly across probes (and workers)."""

    ram: np.ndarray  # [n_layer, n_head]
    visual_mass: np.ndarray
    chance: float
    correct: bool | None = None
    visual: np.ndarray | None = None     # SparseMM hit score
    retrieval: np.ndarray | None = None  # copy score
    extra: dict = field(default_factory=dict)  # callable scores by name


@dataclass
class ProbeAttention:
    """What a callable ``score`` sees of one probe (the tapped pass).

    rows: ``[n_layer, n_head, |Q|, n_tokens]`` attention probabilities of the query positions;
    relevance / visual: the ``[n_tokens]`` r_j and visual indicator; positions: Q; ids: the
    context's token ids (placeholders at visual positions); targets: ``[|Q|]`` the token id each
    query position predicts (-1 where unknown: ``query="last"`` without an answer)."""

    rows: np.ndarray
    relevance: np.ndarray
    visual: np.ndarray
    positions: list[int]
    ids: np.ndarray
    targets: np.ndarray
    probe: Probe


def sparsemm_visual_score(view: ProbeAttention) -> np.ndarray:
    """[n_layer, n_head]: mean over Q of [top-1 key in R] / |R| (SparseMM's hit rule)."""
    target = view.relevance > 0
    n = int(target.sum())
    if n == 0:
        return np.zeros(view.rows.shape[:2])
    top = view.rows.argmax(-1)  # [L, H, |Q|]
    return (target[top].astype(np.float64) / n).mean(-1)


def retrieval_copy_score(view: ProbeAttention) -> np.ndarray:
    """[n_layer, n_head]: mean over Q of [top-1 key in R and its token is the one predicted]."""
    target = (view.relevance > 0) & (view.visual > 0)
    if view.probe.image is not None or view.probe.video is not None:
        target &= False  # image tokens are never copies of text tokens
    top = view.rows.argmax(-1)  # [L, H, |Q|]
    copied = target[top] & (view.ids[top] == view.targets[None, None, :]) & (view.targets >= 0)[None, None, :]
    return copied.astype(np.float64).mean(-1)


def normalize_answer(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().strip()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def probe_prompt(eng: Engine, probe: Probe) -> str:
    """The prompt for a probe: `probe.prompt` verbatim, else the model's chat template with the
    image marker before the question, else a plain 'USER: ... ASSISTANT:' layout. A video probe's
    video goes at the image marker too (the scoring calls pass its clip among the images); a
    verbatim prompt may mark it with the video marker."""
    if probe.prompt is not None:
        return probe.prompt.replace(eng.video_marker, eng.image_marker) if probe.video is not None else probe.prompt
    has_media = probe.image is not None or probe.video is not None
    content = (eng.image_marker if has_media else "") + probe.question
    try:
        return eng.apply_chat_template([{"role": "user", "content": content}])
    except ValueError:
        return f"USER: {content}\nASSISTANT:"


def score_probe(eng: Engine, probe: Probe, query: str = "answer", check_answer: bool = False,
                custom: Callable[[ProbeAttention], np.ndarray] | None = None) -> ProbeScore:
    """RAM/VM partial sums, visual and retrieval scores of one probe, and `custom`'s score when
    given (see the module docstring), from one tapped pass."""
    if query not in ("answer", "last"):
        raise ValueError(f"query must be 'answer' or 'last', got {query!r}")
    from corehead.probes import probe_media

    prompt = probe_prompt(eng, probe)
    # Decode the image (or the video) once; every call below takes the array (the native clip).
    images = probe_media(eng, probe)
    full_prompt = prompt
    if query == "answer":
        if not probe.answer:
            raise ValueError("query='answer' needs probes with an answer (or use query='last')")
        full_prompt = prompt + probe.answer
    visual_positions = None
    if images:
        n_prompt = len(eng.multimodal_tokens(prompt, images))
        # The answer comes after the image, so the full prompt's visual positions are the prompt's.
        ids, visual_positions = eng.prepare(full_prompt, images)
    else:
        n_prompt = len(eng.tokenize(prompt))
        ids = np.asarray(eng.tokenize(full_prompt))
    n = len(ids)
    if query == "answer" and n <= n_prompt:
        raise ValueError(f"the answer {probe.answer!r} tokenizes to nothing after the prompt")
    positions = list(range(n_prompt - 1, n - 1)) if query == "answer" else [n_prompt - 1]

    relevance, visual = relevance_vectors(eng, probe, prompt, images, n, visual_positions)
    w = np.stack([relevance, visual]).astype(np.float32)
    # One pass: RAM/VM reduced on the graph, and the full rows of Q for the argmax scores.
    taps = eng._taps(full_prompt if images else ids.tolist(), images, positions, None, True, w)
    masses, rows = taps.masses, taps.rows
    assert masses is not None and rows is not None
    ram = masses[..., 0].mean(-1).astype(np.float64)
    vm = masses[..., 1].mean(-1).astype(np.float64)
    chance = float(relevance.sum() / max(visual.sum(), 1.0))
    ids = np.asarray(ids, dtype=np.int64)
    if query == "answer":
        targets = ids[np.asarray(positions) + 1]
    else:
        targets = np.full(len(positions), -1, dtype=np.int64)
        if probe.answer:
            after = np.asarray(eng.tokenize(prompt + probe.answer)) if not images else None
            if after is not None and len(after) > n:
                targets[-1] = after[n]
    view = ProbeAttention(rows, relevance, visual, positions, ids, targets, probe)
    extra = {}
    if custom is not None:
        got_score = np.asarray(custom(view), dtype=np.float64)
        if got_score.shape != ram.shape:
            raise ValueError(f"the custom score returned shape {list(got_score.shape)}, not [n_layer, n_head] = "
                             f"{list(ram.shape)}")
        extra[score_name(custom)] = got_score
    correct = None
    if check_answer and probe.answer:
        got = eng.generate(prompt, images=images, max_tokens=16)
        correct = normalize_answer(got) == normalize_answer(probe.answer)
    return ProbeScore(ram, vm, chance, correct, visual=sparsemm_visual_score(view),
                      retrieval=retrieval_copy_score(view), extra=extra)


def score_name(fn: Callable) -> str:
    name = getattr(fn, "__name__", "custom")
    return "custom" if name in BUILTIN_SCORES or name == "<lambda>" else name


def relevance_vectors(eng: Engine, probe: Probe, prompt: str, images: list, n_tokens: int,
                      visual_positions: np.ndarray | None = None):
    """(r, visual indicator) over the n_tokens context positions (visual_positions: when the
    caller already has them from tokenizing the prompt)."""
    r = np.zeros(n_tokens)
    visual = np.zeros(n_tokens)
    if images:
        from corehead.probes import media_size

        (img,) = eng.load_images(images)  # an image array, or a video's native clip
        pos = np.asarray(visual_positions if visual_positions is not None
                         else eng.visual_token_positions(prompt, images))
        # A video's tokens: every temporal patch covers the whole frame, so the bbox marks the
        # same region in each.
        boxes = np.asarray(eng.visual_token_boxes(img))
        if len(pos) != len(boxes):
            raise RuntimeError(f"{len(pos)} visual positions but {len(boxes)} token boxes")
        h, w = media_size(img)
        if probe.video is not None and probe.per_frame:
            rel = frame_relevance(boxes, np.asarray(eng.visual_token_frames(img)),
                                  probe.frame_boxes(img.n_frames, img.timestamps), w, h)
        elif probe.mask is not None:
            m = np.asarray(probe.mask, dtype=bool)
            if m.shape != (h, w):
                raise ValueError(f"the probe's mask is {m.shape}, the image {(h, w)}")
            rel = mask_relevance(boxes, m)
        else:
            targets = clip_boxes(probe.boxes(), w, h)
            if len(targets) == 0:
                raise ValueError("an image probe needs a bbox or a mask (the target region)")
            rel = box_relevance(boxes, targets)
        r[pos] = rel
        visual[pos] = 1.0
        return r, visual
    if probe.span is None:
        raise ValueError("a text probe (no image) needs a target span")
    # Text probe: the context is the question; mark the tokens overlapping the span.
    offsets = _token_char_spans(eng, prompt)
    q0 = prompt.find(probe.question)
    if q0 < 0:
        raise ValueError("the probe's question does not appear in its prompt")
    s, e = q0 + probe.span[0], q0 + probe.span[1]
    for j, (a, b) in enumerate(offsets[:n_tokens]):
        visual[j] = 1.0
        if a < e and b > s:
            r[j] = 1.0
    return r, visual


def frame_relevance(token_boxes: np.ndarray, token_frames: np.ndarray, frame_boxes: Sequence[np.ndarray],
                    width: int, height: int) -> np.ndarray:
    """r_j of a video's tokens for per-frame target boxes (`frame_boxes[k]`: frame k's boxes,
    frame pixels): the mean over token j's two frame slots (token_frames[j] = (f0, f1); f0 == f1
    for one-frame tokens) of box_relevance against that frame's boxes. A mean rather than a union
    keeps r_j the fraction of the token's space-time volume inside the target: a temporal patch
    whose object is in one of its two frames is half relevant, not fully."""
    r = np.zeros(len(token_boxes))
    for k, targets in enumerate(frame_boxes):
        if len(targets) == 0:
            continue
        targets = clip_boxes(np.asarray(targets, dtype=np.float64), width, height, f"bbox of frame {k}")
        # Only the tokens showing frame k, each slot counted once.
        slots = (token_frames[:, 0] == k).astype(np.float64) + (token_frames[:, 1] == k)
        on = np.flatnonzero(slots)
        if len(on):
            r[on] += slots[on] / 2 * box_relevance(token_boxes[on], targets)
    return r


def _token_char_spans(eng: Engine, text: str) -> list[tuple[int, int]]:
    """Character span of each token of `text` (specials have empty spans)."""
    ids = eng.tokenize(text)
    spans, pos = [], 0
    for t in ids:
        piece = eng.tokenizer.token_to_piece(t).decode("utf-8", "ignore")
        if eng.tokenizer.is_eog(t) or t == eng.tokenizer.bos or not piece:
            spans.append((pos, pos))
            continue
        piece = piece.lstrip(" ") or piece
        k = text.find(piece, pos)
        if k < 0:
            spans.append((pos, pos))
            continue
        spans.append((k, k + len(piece)))
        pos = k + len(piece)
    return spans


def reduce_scores(scores: Sequence[ProbeScore],
                  only_correct: bool = False) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Mean over probes (exact: plain sums then one division)."""
    used = [s for s in scores if not only_correct or s.correct]
    if not used:
        raise ValueError("no probe left to average (only_correct=True and the model answered none correctly)")
    ram = np.sum([s.ram for s in used], axis=0) / len(used)
    vm = np.sum([s.visual_mass for s in used], axis=0) / len(used)
    chance = float(sum(s.chance for s in used) / len(used))
    return ram, vm, chance, len(used)


def head_layers(info: dict) -> list[int] | None:
    """The model layers of a ranking's rows: None (every layer) unless the model is hybrid."""
    layers = list(info.get("attention_layers") or range(info["n_layer"]))
    return None if layers == list(range(info["n_layer"])) else layers


def model_identity(info: dict) -> dict:
    return {k: info.get(k) for k in ("arch", "name", "n_layer", "n_head", "n_head_kv", "n_embd", "file_type")}


def ranking_from_scores(scores: Sequence[ProbeScore], info: dict, params: dict, only_correct: bool = False,
                        score: str = "ram") -> HeadRanking:
    """The HeadRanking of per-probe scores: means (as :func:`reduce_scores`) and per-probe arrays."""
    ram, vm, chance, n = reduce_scores(scores, only_correct)
    used = [s for s in scores if not only_correct or s.correct]
    per_probe = {"ram": np.stack([s.ram for s in used])}
    if all(s.visual is not None for s in used):
        per_probe["visual"] = np.stack([s.visual for s in used])
    if all(s.retrieval is not None for s in used):
        per_probe["retrieval"] = np.stack([s.retrieval for s in used])
    for name in used[0].extra:
        per_probe[name] = np.stack([s.extra[name] for s in used])
    means = {k: v.sum(0) / n for k, v in per_probe.items()}
    return HeadRanking(ram=ram, visual_mass=vm, chance=chance, n_probes=n, n_head_kv=info["n_head_kv"],
                       model=model_identity(info), params=params, visual=means.get("visual"),
                       retrieval=means.get("retrieval"),
                       extra={k: v for k, v in means.items() if k not in BUILTIN_SCORES}, score=score,
                       per_probe=per_probe, layers=head_layers(info))


def rank_heads(eng: Engine, probes: Sequence[Probe], query: str = "answer", only_correct: bool = False,
               progress: bool = True, score: str | Callable[[ProbeAttention], np.ndarray] = "ram") -> HeadRanking:
    """Score every attention head over `probes` (see the module docstring); `score` ("ram",
    "visual", "retrieval" or a callable) orders the ranking, all scores are kept."""
    custom = None
    if callable(score):
        custom, score = score, score_name(score)
    elif score not in BUILTIN_SCORES:
        raise ValueError(f"score must be one of {', '.join(BUILTIN_SCORES)} or a callable, got {score!r}")
    if isinstance(probes, Probe):
        probes = [probes]
    probes = list(probes)
    if not probes:
        raise ValueError("rank_heads needs at least one probe")
    scores = []
    iterator = probes
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(probes, desc="rank_heads", unit="probe")
    for i, probe in enumerate(iterator):
        if not isinstance(probe, Probe):
            raise TypeError(f"probe {i} is a {type(probe).__name__}, not a corehead.Probe")
        try:
            with prompt_progress(eng, f"probe {i}", enabled=progress):
                scores.append(score_probe(eng, probe, query=query, check_answer=only_correct, custom=custom))
        except (ValueError, TypeError, RuntimeError) as e:
            line = probe.meta.get("line") if isinstance(probe.meta, dict) else None
            raise type(e)(f"probe {i}{f' (line {line})' if line else ''}: {e}") from e
    params = {"query": query, "only_correct": only_correct, "score": score}
    return ranking_from_scores(scores, eng.info, params, only_correct, score)
