"""Issue 21: other head scores (SparseMM visual, retrieval copy) against a numpy re-computation
from transformers' eager attention, corehead.compare's statistics against scipy, and the
ablation curve's layer-matched controls and bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from corehead import Engine, HeadRanking, Probe, compare, toy
from corehead.agreement import average_ranks
from corehead.evaluate import bootstrap_accuracy_ci, layer_matched
from corehead.ram import relevance_vectors

DATA = Path(__file__).parent / "data"
TOY_THREADS = 1


def text_probes(text: str) -> list[Probe]:
    # As tests/test_ram.py: the teacher-forced sequence is exactly the fixture prompt.
    q, a = text[:-8], text[-8:]
    spans = [(4, 14), (0, 3), (q.find("blue"), q.find("blue") + 11)]
    return [Probe(question=q, prompt=q, answer=a, span=s) for s in spans]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("query", ["answer", "last"])
def test_visual_and_retrieval_scores_equal_numpy_from_transformers(family, query):
    meta = json.loads((DATA / family / "meta.json").read_text())
    ref = np.load(DATA / family / "ref.npz")
    text = meta["prompts"][0]["text"]
    probes = text_probes(text)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        ids = np.asarray(eng.tokenize(text))
        ranking = eng.rank_heads(probes, query=query, progress=False, score="visual")
        vis_ref, ret_ref, min_gap = [], [], np.inf
        for p in probes:
            n_prompt = len(eng.tokenize(p.prompt))
            rows = list(range(n_prompt - 1, len(ids) - 1)) if query == "answer" else [n_prompt - 1]
            r, _ = relevance_vectors(eng, p, p.prompt, [], len(ids))
            A = ref["attn_all"][:, :, rows, :].astype(np.float64)  # transformers, [L, H, |Q|, T]
            top2 = np.sort(A, -1)[..., -2:]
            min_gap = min(min_gap, float((top2[..., 1] - top2[..., 0]).min()))
            top = A.argmax(-1)
            target = set(np.flatnonzero(r > 0).tolist())
            L, H, nq = top.shape
            vis = np.zeros((L, H))
            ret = np.zeros((L, H))
            for li in range(L):
                for h in range(H):
                    for t in range(nq):
                        k = int(top[li, h, t])
                        vis[li, h] += (k in target) / len(target) / nq
                        # row t predicts ids[row + 1] (teacher forced, or for "last" the first answer token)
                        if k in target and ids[k] == ids[rows[t] + 1]:
                            ret[li, h] += 1 / nq
            vis_ref.append(vis)
            ret_ref.append(ret)
    # Argmax is only comparable where transformers' top two keys are clearly apart.
    assert min_gap > 1e-5, "a near-tie in the reference attention: pick other spans"
    np.testing.assert_allclose(ranking.visual, np.mean(vis_ref, 0), atol=1e-12)
    np.testing.assert_allclose(ranking.retrieval, np.mean(ret_ref, 0), atol=1e-12)
    np.testing.assert_allclose(ranking.per_probe["visual"], np.array(vis_ref), atol=1e-12)
    assert ranking.score == "visual" and ranking.order()[0] == tuple(
        int(i) for i in np.unravel_index(np.argmax(np.mean(vis_ref, 0)), ranking.ram.shape))


def test_callable_score():
    """score=callable: the callable sees the probe's tapped rows; written out here, the retrieval
    rule gives the built-in retrieval score (text probe), and names the ranking's score."""
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        def copy_of_target(view):
            top = view.rows.argmax(-1)
            return ((view.relevance > 0)[top] & (view.ids[top] == view.targets)).mean(-1)

        p = text_probes(json.loads((DATA / "llama" / "meta.json").read_text())["prompts"][0]["text"])
        r = eng.rank_heads(p, progress=False, score=copy_of_target)
    assert r.score == "copy_of_target" and r.per_probe["copy_of_target"].shape == (3, *r.ram.shape)
    np.testing.assert_array_equal(r.extra["copy_of_target"], r.retrieval)


def test_score_errors_and_round_trip(tmp_path):
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        p = text_probes(json.loads((DATA / "llama" / "meta.json").read_text())["prompts"][0]["text"])
        with pytest.raises(ValueError, match="score must be one of"):
            eng.rank_heads(p, score="best", progress=False)
        with pytest.raises(ValueError, match="custom score returned shape"):
            eng.rank_heads(p, score=lambda v: np.zeros(3), progress=False)
        r = eng.rank_heads(p, score="retrieval", progress=False)
    r.save(tmp_path / "r.json")
    back = HeadRanking.load(tmp_path / "r.json")
    assert back.score == "retrieval" and back.order() == r.order()
    for k in ("ram", "visual", "retrieval"):
        np.testing.assert_array_equal(back.per_probe[k], r.per_probe[k])
    assert back.by("ram").order() == r.by("ram").order()
    with pytest.raises(ValueError, match="not in this ranking"):
        r.by("custom")
    # Files written before issue 21 (no per-probe scores) still load, and compare without CIs.
    d = json.loads((tmp_path / "r.json").read_text())
    for k in ("visual", "retrieval", "extra", "per_probe", "score"):
        d.pop(k)
    (tmp_path / "old.json").write_text(json.dumps(d))
    old = HeadRanking.load(tmp_path / "old.json")
    assert old.score == "ram" and old.per_probe == {} and "ci" not in compare([old, old]).rows[0]


def _synthetic(seed: int, n_probes: int = 12, shape=(6, 8), noise: float = 0.5, base=None) -> HeadRanking:
    rng = np.random.default_rng(seed)
    base = rng.gamma(2.0, size=shape) if base is None else base
    pp = base[None] + noise * rng.standard_normal((n_probes, *shape))
    pp[:, 0, :2] = pp[:, 0, :1]  # some exact ties, for the tie rules
    return HeadRanking(ram=pp.mean(0), visual_mass=np.ones(shape), chance=0.1, n_probes=n_probes, n_head_kv=shape[1],
                       per_probe={"ram": pp})


def _top_k(values: np.ndarray, k: int) -> set:
    # Independent of corehead: Python's sort on (-value, flat index).
    flat = values.ravel().tolist()
    return set(sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k])


def test_compare_statistics_against_scipy():
    a = _synthetic(0)
    b = _synthetic(1, base=a.ram * 1.0)
    rep = compare([a, b], names=["a", "b"], n_boot=200, seed=7)
    row = rep.rows[0]
    x, y = a.ram.ravel(), b.ram.ravel()
    assert row["spearman"] == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert row["kendall"] == pytest.approx(scipy.stats.kendalltau(x, y).statistic, abs=1e-12)
    for f, k in ((0.01, 1), (0.05, 3), (0.1, 5)):
        sa, sb = _top_k(a.ram, k), _top_k(b.ram, k)
        assert row[f"jaccard@{f:g}"] == pytest.approx(len(sa & sb) / len(sa | sb))
    np.testing.assert_allclose(average_ranks(x), scipy.stats.rankdata(x))
    # The bootstrap, recomputed from the documented draws with scipy's statistics.
    rng = np.random.default_rng(7)
    sp, kd, j5 = [], [], []
    for _ in range(200):
        idx = rng.integers(0, 12, size=12)
        ma, mb = a.per_probe["ram"][idx].mean(0), b.per_probe["ram"][idx].mean(0)
        sp.append(scipy.stats.spearmanr(ma.ravel(), mb.ravel()).statistic)
        kd.append(scipy.stats.kendalltau(ma.ravel(), mb.ravel()).statistic)
        s1, s2 = _top_k(ma, 3), _top_k(mb, 3)
        j5.append(len(s1 & s2) / len(s1 | s2))
    for name, vals in (("spearman", sp), ("kendall", kd), ("jaccard@0.05", j5)):
        np.testing.assert_allclose(row["ci"][name], np.percentile(vals, [2.5, 97.5]), atol=1e-12)
    # Identical rankings agree perfectly; unrelated ones do not.
    same = compare([a, a], n_boot=0).rows[0]
    assert same["spearman"] == pytest.approx(1) and same["kendall"] == pytest.approx(1) and same["jaccard@0.05"] == 1
    other = compare([a, _synthetic(5)], n_boot=0).rows[0]
    assert abs(other["spearman"]) < 0.5
    assert len(compare([a, b, a], pairs="all", n_boot=0).rows) == 3


def test_compare_bad_input():
    a = _synthetic(0)
    with pytest.raises(ValueError, match="at least two"):
        compare([a])
    with pytest.raises(TypeError, match="not a corehead.HeadRanking"):
        compare([a, "b.json"])
    with pytest.raises(ValueError, match="different models"):
        compare([a, _synthetic(1, shape=(2, 4))])
    with pytest.raises(ValueError, match="n_boot"):
        compare([a, a], n_boot=-1)


def test_cli_compare(tmp_path, capsys):
    from corehead.cli import main

    a, b = _synthetic(0), _synthetic(1)
    a.save(tmp_path / "f16.json")
    b.save(tmp_path / "q4.json")
    rc = main(["compare", str(tmp_path / "f16.json"), str(tmp_path / "q4.json"), "--boot", "50",
               "--plot", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "| f16 | q4 |" in out and "Spearman" in out
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["rows"][0]["kendall"] == pytest.approx(scipy.stats.kendalltau(a.ram.ravel(), b.ram.ravel()).statistic)
    assert main(["compare", str(tmp_path / "f16.json"), str(tmp_path / "missing.json")]) == 1
    assert "not found" in capsys.readouterr().err


def test_layer_matched_controls():
    top = [(0, 1), (0, 5), (3, 2)]
    for s in range(10):
        got = layer_matched(top, 8, np.random.default_rng(s))
        assert sorted(la for la, _ in got) == [0, 0, 3]
        assert not set(got) & set(top) and len(set(got)) == 3
    full = [(1, h) for h in range(7)]  # a layer with one other head left
    got = layer_matched(full, 8, np.random.default_rng(0))
    assert (1, 7) in got and len(set(got)) == 7


def test_bootstrap_accuracy_ci_against_a_direct_recomputation():
    rng = np.random.default_rng(3)
    correct = rng.random((4, 30)) < 0.6
    lo, hi = bootstrap_accuracy_ci(correct, n_boot=300, seed=11)
    draw = np.random.default_rng(11)
    probes = draw.integers(0, 30, size=(300, 30))
    runs = draw.integers(0, 4, size=(300, 4))
    means = [np.mean([[correct[r, p] for p in probes[b]] for r in runs[b]]) for b in range(300)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])))
    assert lo < correct.mean() < hi


def test_ablation_curve_controls_on_the_toy_model(toy_engine):
    probes = toy.as_probes(toy.probes(24, seed=3), toy_engine.image_marker)
    ranking = toy_engine.rank_heads(probes, progress=False)
    curve = toy_engine.ablation_curve(ranking, probes, fractions=(0.05,), seeds=3,
                                      baselines=("top", "bottom", "random", "layer_random"), progress=False)
    top = list(ranking.top(0.05))
    rows = {r["baseline"]: r for r in curve.summary()}
    assert set(rows) == {"top", "bottom", "random", "layer_random"}
    for r in curve.runs:
        if r["baseline"] == "layer_random":
            assert sorted(la for la, _ in r["heads"]) == sorted(la for la, _ in top)
            assert not set(map(tuple, r["heads"])) & set(top)
        assert len(r["correct"]) == 24 and np.mean(r["correct"]) == pytest.approx(r["accuracy"])
    for row in rows.values():
        lo, hi = row["ci"]
        assert lo <= row["accuracy"] <= hi
    # The toy model's CoRe heads sit in layer 0: even layer-matched random heads hurt far less.
    assert curve.drop(0.05, "top") > curve.drop(0.05, "layer_random") + 20
    assert "layer_random" in curve.table()
