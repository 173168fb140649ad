"""Head interventions: zero / mean / knockout. Self-consistency here; the transformers
references (o_proj pre-hooks, attention-mask hooks) are in tests/data/*/ablation_ref.npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corehead import Engine
from tests.families import TEXT, with_file

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def llama():
    ref = np.load(DATA / "llama" / "ref.npz")
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        yield eng, ref


def test_clearing_restores_bit_identical_outputs(llama):
    eng, ref = llama
    ids = ref["prompt_ids"]
    base = eng.logits(ids, all_positions=True)
    gen = eng.generate_ids(ids, max_tokens=6, stop_at_eog=False)
    with eng.ablated([(1, 1), (0, 2)], method="zero"):
        assert np.abs(eng.logits(ids, all_positions=True) - base).max() > 1e-3
    with eng.ablated([], method="zero"):  # ablating nothing = no ablation
        np.testing.assert_array_equal(eng.logits(ids, all_positions=True), base)
    np.testing.assert_array_equal(eng.logits(ids, all_positions=True), base)
    assert eng.generate_ids(ids, max_tokens=6, stop_at_eog=False) == gen


def test_mean_of_a_single_position_is_a_no_op(llama):
    # The mean of a head's output over a 1-token reference equals its output on that token.
    eng, ref = llama
    one = [int(ref["prompt_ids"][0])]
    base = eng.logits(one)
    with eng.ablated([(0, 0), (1, 3)], method="mean", reference=[one]):
        np.testing.assert_allclose(eng.logits(one), base, atol=1e-5)


def test_knockout_blocks_the_keys_for_that_head_only(llama):
    eng, ref = llama
    ids = ref["prompt_ids"]
    keys = list(range(1, 6))
    with eng.ablated([(1, 2)], method="knockout", knockout_keys=keys):
        a = eng.attention(ids, positions=[-1, -2])
    assert np.abs(a[1, 2][:, keys]).max() == 0.0
    np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a[0], ref["attn_all"][0][:, [-2, -1]], atol=1e-4)  # layer 0 untouched
    np.testing.assert_allclose(a[1, [0, 1, 3]], ref["attn_all"][1, [0, 1, 3]][:, [-2, -1]], atol=1e-4)


def test_interventions_compose_with_taps_and_generation(llama):
    eng, ref = llama
    ids = ref["prompt_ids"]
    with eng.ablated([(1, 0)], method="zero"):
        logits = eng.logits(ids, all_positions=True)
        gen = eng.generate_ids(ids, max_tokens=4, stop_at_eog=False)
        assert gen[0] == int(logits[-1].argmax())
        a = eng.attention(ids)  # taps inside an ablation leave outputs alone
        np.testing.assert_array_equal(eng.logits(ids, all_positions=True), logits)
    assert a.shape[0] == 2


def test_bad_ablation_input(llama):
    eng, _ = llama
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        with eng.ablated([(5, 0)]):
            pass
    with pytest.raises(ValueError, match="head 9 is out of range"):
        with eng.ablated([(0, 9)]):
            pass
    with pytest.raises(ValueError, match="more than once"):
        with eng.ablated([(0, 1), (0, 1)]):
            pass
    with pytest.raises(ValueError, match="unknown ablation method"):
        with eng.ablated([(0, 1)], method="scramble"):
            pass
    with pytest.raises(ValueError, match="reference"):
        with eng.ablated([(0, 1)], method="mean"):
            pass
    with pytest.raises(TypeError):
        with eng.ablated([0, 1]):
            pass
    # Every head at once is allowed (documented): the model then gets no attention output.
    with eng.ablated([(layer, h) for layer in range(2) for h in range(4)]):
        assert np.isfinite(eng.logits([1, 2, 3])).all()


@pytest.mark.parametrize("family", with_file("ablation_ref.npz", TEXT))
@pytest.mark.parametrize("which", ["zeroA", "zeroB"])
def test_zero_ablation_matches_transformers_o_proj_hook(family, which):
    ref = np.load(DATA / family / "ref.npz")
    abl = np.load(DATA / family / "ablation_ref.npz")
    heads = [tuple(h) for h in abl[f"{which}_heads"].tolist()]
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        with eng.ablated(heads, method="zero"):
            got = eng.logits(ref["prompt_ids"], all_positions=True)
    want = abl[f"{which}_logits_all"]
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    assert np.abs(want - ref["logits_all"]).max() > 1e-2  # the ablation matters


def test_mean_ablation_vectors_and_logits_match_transformers():
    ref = np.load(DATA / "llama" / "ref.npz")
    abl = np.load(DATA / "llama" / "ablation_ref.npz")
    assert abl["mean_ref_prompts"].tolist() == ["prompt", "p1_prompt"]
    reference = [ref["prompt_ids"].tolist(), ref["p1_prompt_ids"].tolist()]
    heads = [tuple(h) for h in abl["mean_heads"].tolist()]
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        means = eng.head_means(reference)  # [n_layer, n_head, head_dim]
        for (layer, h), want in zip(heads, abl["mean_vectors"]):
            np.testing.assert_allclose(means[layer, h], want, atol=1e-5)
        with eng.ablated(heads, method="mean", reference=reference):
            got = eng.logits(ref["prompt_ids"], all_positions=True)
    want = abl["mean_logits_all"]
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


@pytest.mark.parametrize("family", with_file("ablation_ref.npz", TEXT))
def test_answer_positions_attention_matches_transformers(family):
    ref = np.load(DATA / family / "ref.npz")
    abl = np.load(DATA / family / "ablation_ref.npz")
    ids = ref["prompt_ids"].tolist() + abl["answer_ids"].tolist()
    n = len(ids)
    rows = list(range(n - 4, n - 1))  # the positions that predict the 3 answer tokens
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        got = eng.attention(ids, positions=rows)
    np.testing.assert_allclose(got, abl["answer_attn_all"][:, :, rows], atol=1e-4)
