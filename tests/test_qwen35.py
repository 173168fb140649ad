"""Qwen3.5 (`qwen35`, docs/qwen35.md): what the hybrid decoder adds beyond the generic vision tests
(which run on the qwen35 fixture too: pixels, token layout, image embeddings, multimodal logits
and greedy answers against transformers).

Three of every four layers are Gated DeltaNet (linear attention: a causal conv window and a
delta-rule memory carried from token to token, no heads, no KV cache), one in four is gated full
attention. Checked here against the committed transformers references of tests/data/qwen35
(ref.npz: `text_` / `p1_` text-only prompts, the multimodal prompt; heads_ref.npz: interventions
built by tools/refs/qwen35.py): logits at every position, prefill in small batches, decoding
token by token after a prefill, greedy continuations, a new prompt after another, the refused
rewind, the heads (attention layers only: taps, zero ablation, knockout, CoRe-sparse) and files
that do not fit."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from corehead import Engine, ModelError
from tests.families import DATA, meta

D = DATA / "qwen35"
MODEL, MMPROJ = D / "model-f32.gguf", D / "mmproj-f32.gguf"
TEXT_PROMPTS = ["text_", "p1_"]


@pytest.fixture(scope="module")
def ref():
    return np.load(D / "ref.npz")


@pytest.fixture(scope="module")
def eng():
    with Engine(MODEL, n_threads=2) as e:
        yield e


def maxabs(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - want).max())


# --- the decoder --------------------------------------------------------------------------------


def test_logits_at_every_position_match_transformers(eng, ref):
    """transformers' own f32 forward is ~1.3e-3 from its f64 one on this fixture (logits up to
    ~34), so agreement is bounded by f32 rounding: 4.8e-4 measured."""
    for p in TEXT_PROMPTS:
        want = ref[p + "logits_all"]
        got = eng.logits(ref[p + "prompt_ids"], all_positions=True)
        assert got.shape == want.shape
        assert maxabs(got, want) <= 1e-3, (p, maxabs(got, want))
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_prefill_in_small_batches_equals_one_batch(eng, ref):
    """Several ubatches carry the conv window and the delta state from one to the next. (Batches
    of 1 row take ggml's 1-row matmul kernel: 3.5e-4 of logits up to ~34 measured.)"""
    ids = ref["p1_prompt_ids"]
    one = eng.logits(ids, all_positions=True)
    scale = float(np.abs(one).max())
    for n_batch in (1, 5, 16):
        with Engine(MODEL, n_threads=2, n_batch=n_batch) as chunked:
            got = chunked.logits(ids, all_positions=True)
        assert maxabs(got, one) <= 2e-5 * scale, (n_batch, maxabs(got, one))
        assert maxabs(got, ref["p1_logits_all"]) <= 1e-3


@pytest.mark.parametrize("k", [1, 3, 20])
def test_decode_after_prefill_equals_the_full_sequence(eng, ref, k):
    """Prefill the first k tokens, then feed the rest one token per step: every step's logits are
    transformers' logits of the whole sequence at that position."""
    ids, want = ref["p1_prompt_ids"].tolist(), ref["p1_logits_all"]
    first = eng.logits(ids[:k])
    assert maxabs(first, want[k - 1]) <= 1e-3
    for i in range(k, len(ids)):
        got = eng.append([ids[i]])
        assert maxabs(got, want[i]) <= 1e-3, i
    assert eng.n_past == len(ids)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_greedy_continuations_match_transformers(ref, dtype):
    with Engine(D / f"model-{dtype}.gguf", n_threads=2) as e:
        for p in TEXT_PROMPTS:
            want = ref[p + "greedy_ids"].tolist()
            got = e.generate_ids(ref[p + "prompt_ids"], max_tokens=len(want), stop_at_eog=False)
            # f16 weights against the f32 reference: the first 8 tokens (the text_ prompt parts at 12)
            n = len(want) if dtype == "f32" else 8
            assert got[:n] == want[:n], (dtype, p)


def test_a_new_prompt_starts_from_a_clear_state(eng, ref):
    """The recurrent state of the previous prompt is gone: the same logits as on a fresh engine."""
    eng.logits(ref["p1_prompt_ids"])
    got = eng.logits(ref["text_prompt_ids"], all_positions=True)
    assert maxabs(got, ref["text_logits_all"]) <= 1e-3
    with Engine(MODEL, n_threads=2) as fresh:
        np.testing.assert_array_equal(got, fresh.logits(ref["text_prompt_ids"], all_positions=True))


def test_truncate_cannot_rewind_the_recurrent_state(eng, ref):
    ids = ref["text_prompt_ids"].tolist()
    eng.logits(ids)
    eng.truncate(len(ids))  # staying where it is is fine
    with pytest.raises(ValueError, match="Gated DeltaNet layers keep a recurrent state that cannot be rewound"):
        eng.truncate(len(ids) - 3)
    # Nothing moved: the sequence continues where it was.
    assert eng.n_past == len(ids)


def test_choice_scoring_reruns_instead_of_rewinding(eng, ref):
    """evaluate's multi-token choices normally roll the KV cache back; on a hybrid model they are
    scored by one pass per choice: each equals transformers' log-probabilities of the prefix."""
    from corehead.evaluate import choice_logprobs, choice_plan

    ids = ref["p1_prompt_ids"].tolist()
    want = ref["p1_logits_all"].astype(np.float64)
    top = want.max(-1, keepdims=True)
    lp = want - top - np.log(np.exp(want - top).sum(-1, keepdims=True))
    k = 30
    prompt, choices = eng.detokenize(ids[:k]), [eng.detokenize(ids[k:k + n]) for n in (3, 5)]
    _, conts = choice_plan(eng, prompt, choices)
    assert [(c[0], list(c[1])) for c in conts] == [(k, ids[:k + 3]), (k, ids[:k + 5])]  # the reference's tokens
    got = choice_logprobs(eng, prompt, choices)
    expect = [sum(lp[k - 1 + j, ids[k + j]] for j in range(n)) for n in (3, 5)]
    np.testing.assert_allclose(got, expect, atol=2e-3)


def test_info_names_the_attention_layers(eng):
    info, m = eng.info, meta("qwen35")
    assert info["arch"] == "qwen35" and info["n_layer"] == len(m["layer_types"]) == 8
    assert list(info["attention_layers"]) == m["attention_layers"] == [3, 7]
    # conv window (kernel 4 - 1) x (q, k: 2 heads x 16; v: 4 heads x 16) + 4 value heads x 16 x 16, f32,
    # for each of the 6 Gated DeltaNet layers (the fixture's config, tools/fixtures/qwenvl.py)
    assert info["recurrent_state_bytes"] == 6 * 4 * (3 * (2 * 2 * 16 + 4 * 16) + 4 * 16 * 16)
    # The KV cache holds the 2 attention layers only.
    kv = eng._native().kv_bytes
    assert kv == 2 * 2 * eng._native().n_ctx * 2 * 64 * 4  # layers x K,V x n_ctx x kv heads x head_dim x f32


# --- heads: the attention layers' only ------------------------------------------------------------


@pytest.fixture(scope="module")
def mm():
    with Engine(MODEL, mmproj=MMPROJ, n_threads=2) as e:
        yield e, meta("qwen35")["prompt"], str(D / "image.png")


@pytest.fixture(scope="module")
def heads_ref():
    return np.load(D / "heads_ref.npz")


def test_attention_taps_are_the_attention_layers_rows(eng, mm, ref):
    """Taps default to the attention layers (rows of the result in their order, as transformers'
    `attentions`); naming one selects it."""
    for p in TEXT_PROMPTS:
        ids = ref[p + "prompt_ids"]
        got = eng.attention(ids, positions=range(len(ids)))
        assert got.shape == ref[p + "attn_all"].shape  # [2 attention layers, 4 heads, n, n]
        assert maxabs(got, ref[p + "attn_all"]) <= 1e-4, p
    e, prompt, img = mm
    n = len(ref["prompt_ids"])
    got = e.attention(prompt, images=[img], positions=range(n))
    assert maxabs(got, ref["attn_all"]) <= 1e-4
    last = e.attention(prompt, images=[img], layers=[7])
    assert last.shape == (1, 4, 1, n) and maxabs(last[0, :, 0], ref["attn_last"][1]) <= 1e-4


@pytest.mark.parametrize("which", ["zeroA", "zeroB"])
def test_zero_ablation_matches_transformers(mm, heads_ref, which):
    """Zeroing a head zeroes its gated output (attention · sigmoid(gate)), what enters o_proj."""
    e, prompt, img = mm
    heads = [tuple(h) for h in heads_ref[which + "_heads"].tolist()]
    assert all(layer in (3, 7) for layer, _ in heads)
    with e.ablated(heads):
        got = e.logits(prompt, images=[img], all_positions=True)
    want = heads_ref[which + "_logits_all"]
    assert maxabs(got, want) <= 2e-3, maxabs(got, want)
    assert maxabs(e.logits(prompt, images=[img], all_positions=True), want) > 0.5  # the ablation matters


def test_default_knockout_matches_transformers(mm, ref, heads_ref):
    e, prompt, img = mm
    n = len(ref["prompt_ids"])
    heads = [tuple(h) for h in heads_ref["after_heads"].tolist()]
    with e.ablated(heads, method="knockout"):
        attn = e.attention(prompt, images=[img], positions=range(n))
        logits = e.logits(prompt, images=[img], all_positions=True)
    vis = ref["visual_positions"]
    end = int(vis.max()) + 1
    row = {3: 0, 7: 1}
    for layer, h in heads:
        assert np.abs(attn[row[layer], h][end:][:, vis]).max() == 0.0
    assert maxabs(attn, heads_ref["after_attn_all"]) <= 1e-4
    assert maxabs(logits, heads_ref["after_logits_all"]) <= 2e-3


def test_core_sparse_keeps_the_recurrent_state_whole(mm, ref):
    """CoRe-sparse on the attention layers: transformers with the non-CoRe heads' edges from the
    queries after the image to its keys cut (sparse_ref.npz, tools/refs/qwen35.py); the DeltaNet
    layers are untouched (nothing of theirs is dropped)."""
    e, prompt, img = mm
    sp = np.load(D / "sparse_ref.npz")
    core = [(layer, int(kv) * 2) for layer, kv in zip((3, 7), sp["core_kv"].tolist())]  # 2 query heads per KV head
    with e.sparse(core, sink=int(sp["sink"].item())):
        got = e.logits(prompt, images=[img], all_positions=True)
        st = e.kv_stats()
    assert maxabs(got, sp["logits_all"]) <= 2e-3
    assert maxabs(got, ref["logits_all"]) > 1.0  # the cut edges matter
    assert st["groups"]["full"]["kv_heads"] == 2 and st["groups"]["compact"]["kv_heads"] == 2  # attention layers only


def test_heads_of_deltanet_layers_are_refused_by_name(eng, mm):
    e, prompt, img = mm
    msg = "layer 0 is a Gated DeltaNet .* heads are in layers 3, 7"
    with pytest.raises(ValueError, match=msg):
        eng.attention("hello", layers=[0])
    with pytest.raises(ValueError, match=msg):
        with eng.ablated([(0, 1)]):
            eng.logits("hello")
    with pytest.raises(ValueError, match=msg):
        with e.ablated([(0, 1)], method="knockout"):
            e.logits(prompt, images=[img])
    with pytest.raises(ValueError, match=msg):
        with e.sparse([(0, 0)]):
            pass
    with pytest.raises(ValueError, match="out of range"):
        eng.attention("hello", layers=[8])
    assert np.isfinite(eng.logits("hello")).all()  # the engine stays usable
