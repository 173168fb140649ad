"""Do CoRe heads survive quantization? (issue 21; tools/quant). No llama-quantize at test time:

- the toy VLM's Q2_K file that the pinned llama-quantize made is committed (tests/data/toy_quant,
  0.9 MB; its 128-wide rows make llama-quantize fall back to Q4_0 for most tensors): corehead
  re-ranks it and the F16 model on the sweep's probes and must reproduce the committed rankings,
  and the two must agree as the README says (top 5% identical, Spearman >= 0.95, by scipy);
- the committed sweep table (tools/quant/results/sweep.json) must be what corehead.compare gives
  on the committed rankings, with Spearman / Kendall recomputed by scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from corehead import Engine, HeadRanking, toy
from corehead.models import default_model

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "tools" / "quant" / "results"
Q2K = Path(__file__).parent / "data" / "toy_quant" / "toy-Q2_K.gguf"


def test_toy_q2k_reranks_as_committed_and_keeps_the_core_heads():
    _, mmproj = default_model()
    probes = None
    got = {}
    for name, path in (("F16", default_model()[0]), ("Q2_K", Q2K)):
        with Engine(path, mmproj=mmproj, n_threads=1, n_ctx=1024) as eng:  # as tools/quant ranked them
            probes = probes or toy.as_probes(toy.probes(48, seed=5), eng.image_marker)
            got[name] = eng.rank_heads(probes, progress=False)
        want = HeadRanking.load(RESULTS / f"toy-{name}.json")
        # The committed rankings were computed on another host: its SIMD kernels (AVX-512 there, AVX2 on
        # AMD EPYC hosts) round the f16 / Q2_K products and softmax differently. Measured across the two:
        # per-probe RAM within 3.6e-4 (F16) / 2.9e-3 (Q2_K), the mean RAM within 1.5e-5 / 7.1e-5.
        np.testing.assert_allclose(got[name].per_probe["ram"], want.per_probe["ram"], atol=1e-2)
        np.testing.assert_allclose(got[name].ram, want.ram, atol=5e-4)
        np.testing.assert_allclose(got[name].visual, want.visual, atol=1e-9)
    f16, q2 = got["F16"], got["Q2_K"]
    assert set(f16.top(0.05)) == set(q2.top(0.05))
    assert scipy.stats.spearmanr(f16.ram.ravel(), q2.ram.ravel()).statistic >= 0.95


@pytest.mark.parametrize("model", ["toy", "smollm2"])
def test_committed_sweep_table_matches_its_rankings(model):
    sweep = json.loads((RESULTS / "sweep.json").read_text())[model]
    ranks = {q: HeadRanking.load(RESULTS / f"{model}-{q}.json") for q in sweep["types"]}
    ref = ranks["F16"]
    for score, rep in sweep["scores"].items():
        for row in rep["rows"]:
            a, b = ref.by(score).values.ravel(), ranks[row["b"]].by(score).values.ravel()
            assert row["a"] == "F16"
            assert row["spearman"] == pytest.approx(scipy.stats.spearmanr(a, b).statistic, abs=1e-9)
            assert row["kendall"] == pytest.approx(scipy.stats.kendalltau(a, b).statistic, abs=1e-9)
            k = len(ref.top(0.05))
            ta = set(np.lexsort((np.arange(a.size), -a))[:k].tolist())
            tb = set(np.lexsort((np.arange(b.size), -b))[:k].tolist())
            assert row["jaccard@0.05"] == pytest.approx(len(ta & tb) / len(ta | tb))
            lo, hi = row["ci"]["spearman"]
            assert -1 <= lo <= hi <= 1
