"""Evaluation and the ablation curve (docs/architecture.md §5): is a head set *necessary* for the task?

    report = eng.evaluate(probes, metric="choice")          # accuracy with a 95% interval
    curve = eng.ablation_curve(ranking, probes)              # top vs bottom vs random heads
    print(curve.table()); curve.plot("ablation.png")

Metrics (a probe is correct when …):

- ``exact``: the greedy answer (first non-empty line of at most ``max_tokens`` tokens) equals the
  probe's answer after normalization (NFKC, lower case, punctuation removed, spaces collapsed).
- ``contains``: the normalized answer appears as whole words in the normalized greedy output.
- ``choice``: among ``probe.choices`` the one with the highest log-likelihood as a continuation of
  the prompt (sum of its tokens' log-probabilities; no generation) is the answer. Choices are
  scored with the answer's leading whitespace when they lack it (" red" after "…red?").
  Single-token choices cost one forward pass per probe.

Cost: every probe's image is decoded once per call, and its projector output comes from the
engine's image-embedding cache after the first configuration, so an ablation curve runs the
vision encoder once per probe, not once per configuration; configurations that ablate the same
head set (small fractions rounding to the same count) are evaluated once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from corehead.probes import Probe
from corehead.ram import HeadRanking, normalize_answer, probe_prompt

if TYPE_CHECKING:
    from corehead.engine import Engine

METRICS = ("exact", "contains", "choice")
BASELINES = ("top", "bottom", "random")
# Controls a curve may also ask for: "layer_random" draws, for each seed, as many heads from each
# layer as the top set has there (other heads of those layers), so depth is matched.
ALL_BASELINES = BASELINES + ("layer_random",)


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion k/n (sound at 0 and n, unlike k/n ± 2σ)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class EvalReport:
    """Per-probe results of :meth:`Engine.evaluate`."""

    metric: str
    correct: np.ndarray          # bool [n]
    answers: list[str]           # what the model answered (the chosen choice for metric="choice")
    expected: list[str]

    @property
    def n(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.n else 0.0

    @property
    def ci(self) -> tuple[float, float]:
        """95% Wilson interval of the accuracy."""
        return wilson_interval(int(self.correct.sum()), self.n)

    def __str__(self) -> str:
        lo, hi = self.ci
        return f"accuracy {self.accuracy:.3f} [{lo:.3f}, {hi:.3f}] on {self.n} probes ({self.metric})"

    def to_dict(self) -> dict:
        return {"metric": self.metric, "n": self.n, "accuracy": self.accuracy, "ci95": list(self.ci),
                "correct": self.correct.tolist(), "answers": self.answers, "expected": self.expected}


# --- scoring one probe ---------------------------------------------------------------------------


@dataclass
class _Item:
    """A probe made ready once: prompt text, decoded images, answer and choices."""

    prompt: str
    images: list
    answer: str
    choices: list[str] | None
    plan: tuple | None = None  # choice_plan(), made on first use


def _prepare(eng: Engine, probes, metric: str) -> list[_Item]:
    from corehead.probes import probe_media

    if isinstance(probes, Probe):
        probes = [probes]
    probes = list(probes)
    if not probes:
        raise ValueError("no probes to evaluate")
    items = []
    for i, p in enumerate(probes):
        if not isinstance(p, Probe):
            raise TypeError(f"probe {i} is a {type(p).__name__}, not a corehead.Probe")
        if not p.answer or not normalize_answer(p.answer):
            raise ValueError(f"probe {i} has no answer to check")
        choices = None
        if metric == "choice":
            if not p.choices or len(p.choices) < 2:
                raise ValueError(f"probe {i}: metric='choice' needs at least two choices")
            lead = p.answer[: len(p.answer) - len(p.answer.lstrip())]
            choices = [c if c[:1].isspace() else lead + c for c in p.choices]
            if normalize_answer(p.answer) not in {normalize_answer(c) for c in choices}:
                raise ValueError(f"probe {i}: the answer {p.answer!r} is not among its choices {p.choices!r}")
        images = probe_media(eng, p)
        items.append(_Item(probe_prompt(eng, p), images, p.answer, choices))
    return items


def _prompt_ids(eng: Engine, text: str, images: list) -> np.ndarray:
    if images:
        return np.asarray(eng.multimodal_tokens(text, images))
    return np.asarray(eng.tokenize(text))


def choice_plan(eng: Engine, prompt: str, choices: Sequence[str], images: Sequence = ()) -> tuple:
    """How to score each choice: (prompt ids, [(k, ids of prompt + choice)]) where the choice's
    tokens are those after position k (the common prefix with the prompt's tokens, so a merge
    across the boundary is scored, not lost). Independent of head interventions: computed once.
    A prompt given as token ids takes choices as token ids too (scored exactly as given)."""
    if not isinstance(prompt, str):
        if images:
            raise TypeError("with images the prompt must be text")
        base = np.asarray(eng.token_ids(prompt))
        conts = []
        for c in choices:
            if isinstance(c, str):
                raise TypeError("a prompt of token ids takes choices as token ids")
            conts.append((len(base), np.concatenate([base, np.asarray(eng.token_ids(c))])))
        return base, conts
    base = _prompt_ids(eng, prompt, images)
    conts = []
    for c in choices:
        full = _prompt_ids(eng, prompt + c, images)
        k = 0
        limit = min(len(base), len(full))
        while k < limit and base[k] == full[k]:
            k += 1
        if k == len(full):
            raise ValueError(f"the choice {c!r} adds no tokens to the prompt")
        conts.append((k, full))
    return base, conts


def choice_logprobs(eng: Engine, prompt: str, choices: Sequence[str], images: Sequence = (),
                    plan: tuple | None = None) -> np.ndarray:
    """Log-likelihood of each choice as a continuation of `prompt` (float64 [n_choices]): the sum
    of its tokens' log-probabilities (see :func:`choice_plan`)."""
    imgs = eng.load_images(images)
    base, conts = plan if plan is not None else choice_plan(eng, prompt, choices, imgs)
    if all(k == len(base) and len(full) == k + 1 for k, full in conts):
        # Single-token choices: one forward pass over the prompt.
        logits = eng.logits(prompt if imgs else base.tolist(), images=imgs).astype(np.float64)
        lp = logits - _logsumexp(logits)
        return np.array([lp[full[k]] for k, full in conts])
    if eng._native().sparse_options is not None or eng.info.get("recurrent_state_bytes", 0) or any(
            k < 1 for k, _ in conts) or (imgs and any(k < _image_end(eng, prompt, imgs) for k, _ in conts)):
        # The CoRe-sparse cache and a hybrid model's recurrent state (qwen35) cannot roll back,
        # and a choice whose tokens start inside the prompt's images needs them re-run: one
        # forward pass per choice.
        return _choice_logprobs_rerun(eng, prompt, choices, imgs, conts)
    # One prefill of the prompt (and its images), keeping only the rows that predict each
    # choice's first token; then all choices' later tokens in one forward pass, each choice a
    # branch that sees the prompt up to where its tokens start and its own tokens (the last token
    # of a choice is never fed: nothing is predicted after it).
    rows = sorted({k - 1 for k, _ in conts})
    first = eng.logits(prompt if imgs else base.tolist(), images=imgs, positions=rows).astype(np.float64)
    first = first - _logsumexp(first, axis=-1)[:, None]
    at = {r: i for i, r in enumerate(rows)}
    out = [float(first[at[k - 1], full[k]]) for k, full in conts]
    longer = [i for i, (k, full) in enumerate(conts) if len(full) > k + 1]
    if longer:
        branches = eng.append_branches([(conts[i][0], conts[i][1][conts[i][0]:-1].tolist()) for i in longer])
        for i, lg in zip(longer, branches):
            k, full = conts[i]
            lp = lg.astype(np.float64)
            lp = lp - _logsumexp(lp, axis=-1)[:, None]
            out[i] += float(lp[np.arange(len(lp)), full[k + 1:]].sum())
    return np.array(out)


def _image_end(eng: Engine, prompt: str, imgs: list) -> int:
    vis = eng.visual_token_positions(prompt, imgs)
    return int(np.max(vis)) + 1 if len(vis) else 0


def _choice_logprobs_rerun(eng: Engine, prompt: str, choices: Sequence[str], imgs: list, conts: list) -> np.ndarray:
    out = []
    for c, (k, full) in zip(choices, conts):
        logits = eng.logits(prompt + c if imgs else full.tolist(), images=imgs, all_positions=True)
        rows = logits[k - 1: len(full) - 1].astype(np.float64)
        lp = rows - _logsumexp(rows, axis=-1)[:, None]
        out.append(float(lp[np.arange(len(rows)), full[k:]].sum()))
    return np.array(out)


def _logsumexp(x: np.ndarray, axis: int | None = None):
    m = x.max(axis=axis, keepdims=True)
    s = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return s.squeeze() if axis is None else np.squeeze(s, axis=axis)


def _answer(eng: Engine, item: _Item, metric: str, max_tokens: int) -> tuple[str, bool]:
    want = normalize_answer(item.answer)
    if metric == "choice":
        if item.plan is None:
            item.plan = choice_plan(eng, item.prompt, item.choices, item.images)
        scores = choice_logprobs(eng, item.prompt, item.choices, item.images, plan=item.plan)
        best = item.choices[int(np.argmax(scores))]
        return best, normalize_answer(best) == want
    text = eng.generate(item.prompt, images=item.images, max_tokens=max_tokens)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    got = normalize_answer(lines[0]) if lines else ""
    if metric == "exact":
        return text, got == want
    return text, f" {want} " in f" {normalize_answer(text)} "


def _check_metric(metric: str, max_tokens: int) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (use one of {', '.join(METRICS)})")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")


def _run(eng: Engine, items: list[_Item], metric: str, max_tokens: int, bar=None) -> EvalReport:
    answers, correct = [], []
    for item in items:
        a, ok = _answer(eng, item, metric, max_tokens)
        answers.append(a)
        correct.append(ok)
        if bar is not None:
            bar.update(1)
    return EvalReport(metric, np.array(correct, dtype=bool), answers, [it.answer for it in items])


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="probe")


def evaluate(eng: Engine, probes, metric: str = "exact", progress: bool = True, max_tokens: int = 16) -> EvalReport:
    """Accuracy of the engine (with whatever head interventions are active) on `probes`."""
    _check_metric(metric, max_tokens)
    items = _prepare(eng, probes, metric)
    bar = _progress(progress, len(items), "evaluate")
    try:
        return _run(eng, items, metric, max_tokens, bar)
    finally:
        if bar is not None:
            bar.close()


# --- the ablation curve --------------------------------------------------------------------------


@dataclass
class AblationCurve:
    """Accuracy after ablating the top / bottom / random `fraction` of heads (by RAM).

    ``runs``: one dict per configuration — fraction, baseline, seed (random only), k (heads
    ablated), heads, accuracy, and ``correct`` (per-probe bools) where known. ``summary()`` gives
    each point a 95% percentile bootstrap interval (``ci``): probes resampled with replacement
    (and, for random controls, the seeds too), ``n_boot`` times with
    ``numpy.random.default_rng(boot_seed)``."""

    base_accuracy: float
    n_probes: int
    metric: str
    method: str
    n_heads: int
    runs: list[dict] = field(default_factory=list)
    base_report: EvalReport | None = None
    n_boot: int = 1000
    boot_seed: int = 0

    def summary(self) -> list[dict]:
        """Per (fraction, baseline): k, mean and std accuracy over seeds, drop in points, and the
        bootstrap interval ``ci`` of the accuracy (None without per-probe results)."""
        out = []
        for frac in sorted({r["fraction"] for r in self.runs}):
            for base in ALL_BASELINES:
                rs = [r for r in self.runs if r["fraction"] == frac and r["baseline"] == base]
                if not rs:
                    continue
                accs = [r["accuracy"] for r in rs]
                mean = float(np.mean(accs))
                ci = None
                if self.n_boot and all(r.get("correct") is not None for r in rs):
                    ci = bootstrap_accuracy_ci(np.array([r["correct"] for r in rs], dtype=bool), self.n_boot,
                                               self.boot_seed)
                out.append({"fraction": frac, "baseline": base, "k": rs[0]["k"], "accuracy": mean,
                            "std": float(np.std(accs)), "n_runs": len(accs),
                            "drop": 100.0 * (self.base_accuracy - mean), "ci": ci})
        return out

    def drop(self, fraction: float, baseline: str) -> float:
        """Accuracy drop in points for one configuration (mean over seeds for random)."""
        for row in self.summary():
            if math.isclose(row["fraction"], fraction) and row["baseline"] == baseline:
                return row["drop"]
        raise KeyError(f"no {baseline!r} run at fraction {fraction}")

    def table(self) -> str:
        lines = [f"unablated accuracy {self.base_accuracy:.3f} on {self.n_probes} probes "
                 f"({self.metric}; ablation: {self.method})",
                 " fraction  heads  baseline      accuracy          95% CI          drop (points)",
                 " --------  -----  ------------  ----------------  --------------  -------------"]
        for r in self.summary():
            acc = f"{r['accuracy']:.3f}" + (f" ± {r['std']:.3f}" if r["n_runs"] > 1 else "")
            ci = f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]" if r["ci"] else "-"
            lines.append(f" {r['fraction']:8.1%}  {r['k']:5d}  {r['baseline']:12s}  {acc:16s}  {ci:14s}  "
                         f"{r['drop']:13.1f}")
        return "\n".join(lines)

    def plot(self, path: str | Path, title: str | None = None) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        rows = self.summary()
        colors = {"top": "tab:red", "bottom": "tab:blue", "random": "tab:gray", "layer_random": "tab:green"}
        for base in ALL_BASELINES:
            rs = [r for r in rows if r["baseline"] == base]
            if not rs:
                continue
            x = [100 * r["fraction"] for r in rs]
            y = np.array([r["accuracy"] for r in rs])
            label = {"top": "top by RAM (CoRe)", "bottom": "bottom by RAM", "random": "random",
                     "layer_random": "random, layer-matched"}[base]
            ax.plot(x, y, marker="o", color=colors[base], label=label)
            if all(r["ci"] for r in rs):  # 95% bootstrap intervals
                ax.fill_between(x, [r["ci"][0] for r in rs], [r["ci"][1] for r in rs], color=colors[base], alpha=0.15)
        ax.axhline(self.base_accuracy, color="black", linestyle="--", linewidth=1, label="no ablation")
        ax.set_xlabel("heads ablated (% of all heads)")
        ax.set_ylabel(f"accuracy ({self.metric})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title or f"Ablation curve ({self.method}, {self.n_probes} probes)")
        ax.legend(loc="lower left")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    def to_dict(self) -> dict:
        return {"format": "corehead.AblationCurve/1", "base_accuracy": self.base_accuracy,
                "n_probes": self.n_probes, "metric": self.metric, "method": self.method, "n_heads": self.n_heads,
                "runs": [{**r, "heads": [list(h) for h in r["heads"]]} for r in self.runs],
                "summary": self.summary()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))


def bootstrap_accuracy_ci(correct: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean accuracy of ``correct`` (bool [n_runs,
    n_probes]): each resample draws probe indices (shared by every run: they saw the same probes)
    and run indices with replacement from ``numpy.random.default_rng(seed)``."""
    c = np.asarray(correct, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] == 0:
        raise ValueError(f"correct must be [n_runs, n_probes] with n_probes > 0, got {list(c.shape)}")
    rng = np.random.default_rng(seed)
    n_runs, n = c.shape
    probes = rng.integers(0, n, size=(n_boot, n))
    runs = rng.integers(0, n_runs, size=(n_boot, n_runs)) if n_runs > 1 else np.zeros((n_boot, 1), dtype=int)
    means = np.array([c[np.ix_(runs[b], probes[b])].mean() for b in range(n_boot)])
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def _check_fractions(fractions) -> list[float]:
    if isinstance(fractions, (int, float)):
        fractions = [fractions]
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {f!r}")
        out.append(float(f))
    if not out:
        raise ValueError("no fractions given")
    return sorted(set(out))


def default_metric(probes: list, metric: str | None) -> str:
    """metric=None: "choice" when every probe has choices, else "exact"."""
    if metric is None:
        metric = "choice" if probes and all(isinstance(p, Probe) and p.choices for p in probes) else "exact"
    return metric


def curve_configs(ranking: HeadRanking, info: dict, fractions, baselines, seeds: int, method: str,
                  seed: int) -> list[tuple]:
    """Every configuration of an ablation curve, checked: (fraction, baseline, seed or None, heads).
    Random head sets for seed s are the first k heads of one permutation drawn with
    ``numpy.random.default_rng(seed + s)``, so they are nested across fractions."""
    from corehead.ablation import METHODS, head_list

    if not isinstance(ranking, HeadRanking):
        raise TypeError(f"ranking must be a corehead.HeadRanking, got {type(ranking).__name__}")
    ranking.check_model(info)
    fracs = _check_fractions(fractions)
    if isinstance(baselines, str):
        baselines = [baselines]
    for b in baselines:
        if b not in ALL_BASELINES:
            raise ValueError(f"unknown baseline {b!r} (use {', '.join(ALL_BASELINES)})")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, got {seeds!r}")
    if method not in METHODS:
        raise ValueError(f"unknown ablation method {method!r} (use one of {', '.join(METHODS)})")
    n_layer, n_head = info["n_layer"], info["n_head"]
    all_heads = [(layer, h) for layer in range(n_layer) for h in range(n_head)]
    configs = []
    for frac in fracs:
        for b in baselines:
            if b == "top":
                configs.append((frac, b, None, list(ranking.top(frac))))
            elif b == "bottom":
                configs.append((frac, b, None, list(ranking.bottom(frac))))
            elif b == "layer_random":
                top = list(ranking.top(frac))
                for s in range(seeds):
                    configs.append((frac, b, seed + s, layer_matched(top, n_head, np.random.default_rng(seed + s))))
            else:
                k = len(ranking.top(frac))
                for s in range(seeds):
                    perm = np.random.default_rng(seed + s).permutation(len(all_heads))
                    configs.append((frac, b, seed + s, [all_heads[i] for i in perm[:k]]))
    for heads in {tuple(sorted(h)) for *_, h in configs}:
        head_list(heads, n_layer, n_head)  # validate before any work
    return configs


def layer_matched(top: list[tuple[int, int]], n_head: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """As many heads per layer as `top` has there, drawn at random from that layer's other heads
    (its top heads too only when the layer has too few others)."""
    out = []
    for layer in sorted({la for la, _ in top}):
        want = sum(1 for la, _ in top if la == layer)
        chosen = {h for la, h in top if la == layer}
        others = [h for h in range(n_head) if h not in chosen]
        pick = list(rng.permutation(others)[:want])
        if len(pick) < want:
            pick += list(rng.permutation(sorted(chosen))[: want - len(pick)])
        out += [(layer, int(h)) for h in pick]
    return out


def ablation_curve(eng: Engine, ranking: HeadRanking, probes, fractions=(0.01, 0.02, 0.05, 0.1, 0.2),
                   baselines=BASELINES, seeds: int = 5, method: str = "zero", metric: str | None = None,
                   reference=None, seed: int = 0, progress: bool = True, max_tokens: int = 16,
                   queries: str = "after") -> AblationCurve:
    """Evaluate `probes` with the top / bottom / random `fractions` of heads ablated.

    ranking: a HeadRanking of this model (checked). Random head sets for seed s are the first k
    heads of one permutation drawn with ``numpy.random.default_rng(seed + s)``, so they are nested
    across fractions; ``baselines`` may add "layer_random" (:func:`layer_matched`: the top set's
    per-layer head counts, other heads of those layers, one draw per seed). Every point gets a
    95% bootstrap interval over probes (and seeds) in ``curve.summary()``.
    metric: "choice" when every probe has choices, else "exact". method="mean"
    averages over ``reference`` (default: the probes themselves, images included). queries: for
    method="knockout", "after" (the queries after the image) or "all" (see :mod:`corehead.ablation`).
    """
    if queries not in ("after", "all"):
        raise ValueError(f"queries must be 'after' or 'all', got {queries!r}")
    info = eng.info
    configs = curve_configs(ranking, info, fractions, baselines, seeds, method, seed)
    plist = [probes] if isinstance(probes, Probe) else list(probes)
    metric = default_metric(plist, metric)
    _check_metric(metric, max_tokens)
    items = _prepare(eng, plist, metric)
    n_layer, n_head = info["n_layer"], info["n_head"]
    distinct = {tuple(sorted(h)) for *_, h in configs}
    means = None
    if method == "mean":
        means = eng.head_means(reference if reference is not None else plist, cached=True)

    bar = _progress(progress, len(items) * (len(distinct) + 1), "ablation curve")
    done: dict[tuple, EvalReport] = {}
    try:
        base = _run(eng, items, metric, max_tokens, bar)
        curve = AblationCurve(base.accuracy, len(items), metric, method, n_layer * n_head, base_report=base)
        for frac, b, s, heads in configs:
            key = tuple(sorted(heads))
            if key not in done:
                with eng.ablated(heads, method=method, means=means, queries=queries):
                    done[key] = _run(eng, items, metric, max_tokens, bar)
            curve.runs.append({"fraction": frac, "baseline": b, "seed": s, "k": len(heads), "heads": heads,
                               "accuracy": done[key].accuracy, "correct": done[key].correct.tolist()})
    finally:
        if bar is not None:
            bar.close()
    return curve
