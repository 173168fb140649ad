"""How much do two head rankings agree? (issue 21: head scores, and rankings under quantization)

    from corehead import compare
    report = compare([f16, q4], names=["F16", "Q4_K_M"])      # each ranking by its own .score
    print(report.table()); report.plot("compare.png")
    compare([r.by("ram"), r.by("visual")])                      # two scores of one pass

Statistics, for each ranking against the first (``pairs="reference"``) or every pair (``"all"``):

- ``jaccard@f``: |A ∩ B| / |A ∪ B| of the two top-``f`` head sets (``HeadRanking.top(f)``, so the
  same count and tie rule), for f in ``fractions`` (default 1%, 5%, 10%);
- ``spearman``: Spearman's rho over all query heads (Pearson correlation of the average ranks);
- ``kendall``: Kendall's tau-b over all query heads (ties counted as in scipy.stats.kendalltau).

Confidence intervals: a percentile bootstrap over probes (``n_boot`` resamples, 95%). Each
resample draws probe indices ``rng.integers(0, n, size=n)`` with ``rng =
numpy.random.default_rng(seed)``, recomputes both rankings' mean scores from their per-probe
scores (``HeadRanking.per_probe``), then every statistic. When both rankings have the same number
of probes they are taken to be the same probes (a quantization sweep scores one probe set) and the
same indices resample both (a paired bootstrap); otherwise each is resampled independently.
Rankings without per-probe scores (older files) get no interval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from corehead.ram import HeadRanking

FRACTIONS = (0.01, 0.05, 0.10)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties given the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sx = x[order]
    # Start of each run of equal values, and the mean rank of that run.
    starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])
    ends = np.r_[starts[1:], len(x)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = average_ranks(a), average_ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a)(n0 - ties_b)), O(n^2)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    iu = np.triu_indices(len(a), 1)
    sa = np.sign(a[:, None] - a[None, :])[iu]
    sb = np.sign(b[:, None] - b[None, :])[iu]
    denom = np.sqrt(np.abs(sa).sum() * np.abs(sb).sum())
    return float((sa * sb).sum() / denom) if denom > 0 else float("nan")


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _top_set(values: np.ndarray, count: int) -> set[int]:
    """Flat indices of the `count` best values, ties to the lower index (HeadRanking.order's rule)."""
    flat = values.ravel()
    return set(np.lexsort((np.arange(flat.size), -flat))[:count].tolist())


def pair_stats(a: np.ndarray, b: np.ndarray, counts: dict[float, int]) -> dict[str, float]:
    """Every statistic of two [n_layer, n_head] score arrays; counts: top-set size per fraction."""
    out = {f"jaccard@{f:g}": jaccard(_top_set(a, k), _top_set(b, k)) for f, k in counts.items()}
    out["spearman"] = spearman(a, b)
    out["kendall"] = kendall(a, b)
    return out


@dataclass
class Comparison:
    """The agreement of ranking pairs: ``rows`` has one dict per pair (names, statistics, and a
    ``ci`` dict of [low, high] per statistic when bootstrapped)."""

    names: list[str]
    scores: list[str]
    fractions: list[float]
    n_boot: int
    rows: list[dict] = field(default_factory=list)

    def stat(self, a: str, b: str, name: str) -> float:
        for r in self.rows:
            if {r["a"], r["b"]} == {a, b}:
                return float(r[name])
        raise KeyError(f"no comparison of {a!r} with {b!r}")

    def table(self) -> str:
        cols = [f"jaccard@{f:g}" for f in self.fractions] + ["spearman", "kendall"]
        heads = [f"top {f:.0%} Jaccard" for f in self.fractions] + ["Spearman", "Kendall"]
        lines = ["| a | b | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(cols)]
        for r in self.rows:
            cells = []
            for c in cols:
                ci = r.get("ci", {}).get(c)
                cells.append(f"{r[c]:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
            lines.append(f"| {r['a']} | {r['b']} | " + " | ".join(cells) + " |")
        if self.n_boot:
            lines.append(f"\n[95% percentile bootstrap over probes, {self.n_boot} resamples]")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"format": "corehead.Comparison/1", "names": self.names, "scores": self.scores,
                "fractions": self.fractions, "n_boot": self.n_boot, "rows": self.rows}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def plot(self, path: str | Path, rankings: list[HeadRanking] | None = None, title: str | None = None) -> None:
        """Bars of every statistic per pair (with CIs); with `rankings`, also a scatter of each
        ranking's per-head scores against the reference's."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cols = [f"jaccard@{f:g}" for f in self.fractions] + ["spearman", "kendall"]
        n_scatter = len(rankings) - 1 if rankings else 0
        fig, axes = plt.subplots(1, 1 + n_scatter, figsize=(6 + 3.2 * n_scatter, 4), squeeze=False)
        ax = axes[0, 0]
        width = 0.8 / max(1, len(self.rows))
        x = np.arange(len(cols))
        for i, r in enumerate(self.rows):
            y = np.array([r[c] for c in cols])
            ci = r.get("ci", {})
            err = None
            if all(c in ci for c in cols):
                err = np.array([[y[k] - ci[c][0], ci[c][1] - y[k]] for k, c in enumerate(cols)]).T.clip(0)
            ax.bar(x + i * width, y, width, yerr=err, capsize=2, label=f"{r['a']} vs {r['b']}")
        ax.set_xticks(x + width * (len(self.rows) - 1) / 2)
        ax.set_xticklabels([c.replace("jaccard@", "J@") for c in cols], rotation=30)
        ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.05)
        ax.set_title(title or "ranking agreement")
        ax.legend(fontsize=7, loc="lower left")
        if rankings:
            ref = rankings[0]
            for k, other in enumerate(rankings[1:], 1):
                a2 = axes[0, k]
                a2.scatter(ref.values.ravel(), other.values.ravel(), s=8, alpha=0.6)
                top = {h for h in ref.top(0.05)}
                pts = np.array([(ref.values[h], other.values[h]) for h in top])
                a2.scatter(pts[:, 0], pts[:, 1], s=16, color="red", label="reference top 5%")
                a2.set_xlabel(f"{self.names[0]} ({ref.score})")
                a2.set_ylabel(f"{self.names[k]} ({other.score})")
                a2.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def _bootstrap(pa: np.ndarray, pb: np.ndarray, counts: dict[float, int], n_boot: int,
               rng: np.random.Generator) -> dict[str, list[float]]:
    paired = len(pa) == len(pb)
    samples: dict[str, list[float]] = {}
    for _ in range(n_boot):
        ia = rng.integers(0, len(pa), size=len(pa))
        ib = ia if paired else rng.integers(0, len(pb), size=len(pb))
        for k, v in pair_stats(pa[ia].mean(0), pb[ib].mean(0), counts).items():
            samples.setdefault(k, []).append(v)
    return {k: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))] for k, v in samples.items()}


def compare(rankings, names: list[str] | None = None, fractions=FRACTIONS, n_boot: int = 1000, seed: int = 0,
            pairs: str = "reference") -> Comparison:
    """Agreement of head rankings (see the module docstring). `rankings`: a list of HeadRanking
    (or a dict name -> HeadRanking); each is compared by its own ``.score``."""
    if isinstance(rankings, dict):
        names = list(rankings) if names is None else names
        rankings = list(rankings.values())
    rankings = list(rankings)
    if len(rankings) < 2:
        raise ValueError("compare needs at least two rankings")
    for i, r in enumerate(rankings):
        if not isinstance(r, HeadRanking):
            raise TypeError(f"ranking {i} is a {type(r).__name__}, not a corehead.HeadRanking")
    shape = rankings[0].values.shape
    for i, r in enumerate(rankings[1:], 1):
        if r.values.shape != shape:
            raise ValueError(f"ranking {i} has {list(r.values.shape)} heads, ranking 0 has {list(shape)}: "
                             "rankings of different models cannot be compared head by head")
    names = [f"#{i}" for i in range(len(rankings))] if names is None else [str(n) for n in names]
    if len(names) != len(rankings):
        raise ValueError(f"{len(names)} names for {len(rankings)} rankings")
    if pairs not in ("reference", "all"):
        raise ValueError(f"pairs must be 'reference' or 'all', got {pairs!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be an int >= 0, got {n_boot!r}")
    fracs = sorted({float(f) for f in fractions})
    if not fracs or not all(0 < f <= 1 for f in fracs):
        raise ValueError(f"fractions must lie in (0, 1], got {list(fractions)}")
    counts = {f: len(rankings[0].top(f)) for f in fracs}
    todo = [(0, j) for j in range(1, len(rankings))] if pairs == "reference" else \
        [(i, j) for i in range(len(rankings)) for j in range(i + 1, len(rankings))]
    out = Comparison(names, [r.score for r in rankings], fracs, n_boot)
    rng = np.random.default_rng(seed)
    for i, j in todo:
        a, b = rankings[i], rankings[j]
        row: dict = {"a": names[i], "b": names[j], **pair_stats(a.values, b.values, counts)}
        pa, pb = a.per_probe.get(a.score), b.per_probe.get(b.score)
        if n_boot and pa is not None and pb is not None:
            row["ci"] = _bootstrap(np.asarray(pa), np.asarray(pb), counts, n_boot, rng)
        out.rows.append(row)
    return out
