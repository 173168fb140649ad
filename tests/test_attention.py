"""Attention taps against transformers' eager attention (output_attentions=True), from the
committed fixtures; on-graph masses against a numpy re-computation; taps change nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corehead import Engine
from tests.families import TEXT

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", params=TEXT)
def family(request):
    return request.param


def test_attention_rows_match_transformers(family):
    r = np.load(DATA / family / "ref.npz")
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        for p in ("", "p1_"):
            ids = r[p + "prompt_ids"]
            n = len(ids)
            got = eng.attention(ids, positions=range(n))
            want = r[p + "attn_all"]
            assert got.shape == want.shape
            assert np.abs(got - want).max() <= 1e-4
            np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
            last = eng.attention(ids)  # default: the last prompt position
            np.testing.assert_allclose(last[:, :, 0], r[p + "attn_last"], atol=1e-4)


def test_attention_in_small_batches_and_selected_layers(family):
    r = np.load(DATA / family / "ref.npz")
    ids = r["p1_prompt_ids"]
    with Engine(DATA / family / "model-f32.gguf", n_threads=2, n_batch=7) as eng:
        got = eng.attention(ids, positions=[-1, 3, 20, 3], layers=[1])
        want = r["p1_attn_all"][[1]][:, :, [3, 20, len(ids) - 1]]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_masses_equal_numpy_reduction(family):
    r = np.load(DATA / family / "ref.npz")
    ids = r["prompt_ids"]
    n = len(ids)
    w = np.random.default_rng(1).random((3, n)).astype(np.float32)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        got = eng.attention_masses(ids, w, positions=[-2, -1])
        want = np.einsum("rk,lhpk->lhpr", w, r["attn_all"][:, :, [n - 2, n - 1]])
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_taps_do_not_change_logits_or_generation(family):
    r = np.load(DATA / family / "ref.npz")
    ids = r["prompt_ids"]
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        before = eng.logits(ids, all_positions=True)
        gen_before = eng.generate_ids(ids, max_tokens=8, stop_at_eog=False)
        eng.attention(ids, positions=range(len(ids)))
        np.testing.assert_array_equal(eng.logits(ids, all_positions=True), before)
        assert eng.generate_ids(ids, max_tokens=8, stop_at_eog=False) == gen_before


def test_attention_bad_input():
    r = np.load(DATA / "llama" / "ref.npz")
    ids = r["prompt_ids"]
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=1) as eng:
        with pytest.raises(ValueError, match="out of range"):
            eng.attention(ids, positions=[len(ids)])
        with pytest.raises(ValueError, match="out of range"):
            eng.attention(ids, positions=[-len(ids) - 1])
        with pytest.raises(ValueError, match="layer 2 is out of range"):
            eng.attention(ids, layers=[2])
        with pytest.raises(TypeError):
            eng.attention(ids, positions=[0.5])
        with pytest.raises(ValueError, match="empty"):
            eng.attention(ids, positions=[])
        with pytest.raises(ValueError, match="shape"):
            eng.attention_masses(ids, np.ones((2, 3)))
        with pytest.raises(ValueError, match="non-finite"):
            eng.attention_masses(ids, np.full((1, len(ids)), np.nan))
