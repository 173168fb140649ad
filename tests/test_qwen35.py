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

import gguf
import numpy as np
import pytest
from gguf.scripts.gguf_new_metadata import copy_with_new_metadata

from corehead import Engine, ModelError
from tests.families import DATA, meta
from tests.test_qwen3vl import with_uint32

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
    # Branches of one prefix in one pass would run through one recurrent state: refused, untouched.
    with pytest.raises(ValueError, match="recurrent"):
        eng.append_branches([(len(ids), ids[:3]), (len(ids) - 2, ids[:2])])
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


# --- multimodal -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_batch", [512, 16])
def test_multimodal_logits_at_every_position_match_transformers(ref, n_batch):
    """Every row of the image prompt, also when its 77 image tokens are split over 16-row batches
    (a DeltaNet state and an M-RoPE position per row): the token layout and the 3-D positions are
    transformers' (a wrong position of any token after the image would show in its row)."""
    with Engine(MODEL, mmproj=MMPROJ, n_threads=2, n_batch=n_batch) as e:
        prompt, img = meta("qwen35")["prompt"], D / "image.png"
        ids, vis = e.prepare(prompt, [img])
        np.testing.assert_array_equal(ids, ref["prompt_ids"])
        np.testing.assert_array_equal(vis, ref["visual_positions"])
        got = e.logits(prompt, images=[img], all_positions=True)
    want = ref["logits_all"]
    assert maxabs(got, want) <= 1e-3 * np.abs(want).max()


def test_recorded_positions_are_qwen2vl_style():
    """The reference's M-RoPE ids (transformers' get_rope_index): the image at its start position
    in t, rows in h, columns in w; the text after it continues at start + max(h, w) / 2."""
    r = np.load(D / "ref.npz")
    pos, vis = r["mrope_position_ids"], r["visual_positions"]
    _, gh, gw = r["image_grid_thw"]
    start, k = vis[0], np.arange(len(vis))
    np.testing.assert_array_equal(pos[0, vis], np.full(len(vis), start))
    np.testing.assert_array_equal(pos[1, vis], start + k // (gw // 2))
    np.testing.assert_array_equal(pos[2, vis], start + k % (gw // 2))
    assert pos[0, vis[-1] + 1] == start + max(gh, gw) // 2


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


def test_mean_ablation_matches_transformers(mm, ref, heads_ref):
    """The head's mean output over the two text prompts (every position), then that vector in
    place of its output: the mean equals transformers' captured o_proj input mean, and so do the
    logits. Head means of the DeltaNet layers are zeros (no heads)."""
    from corehead.ablation import head_means

    e, prompt, img = mm
    refs = [ref["text_prompt_ids"].tolist(), ref["p1_prompt_ids"].tolist()]
    means = head_means(e, refs)
    assert means.shape == (8, 4, 64) and not means[[0, 1, 2, 4, 5, 6]].any()
    (layer, h), = heads_ref["mean_heads"].tolist()
    assert maxabs(means[layer, h], heads_ref["mean_vector"]) <= 1e-4
    with e.ablated([(layer, h)], method="mean", reference=refs):
        got = e.logits(prompt, images=[img], all_positions=True)
    assert maxabs(got, heads_ref["mean_logits_all"]) <= 2e-3


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


def test_knockout_presets_in_layer_windows_knock_the_attention_layers(mm, ref, heads_ref):
    """Image->Last over a window of layers knocks every head of the window's attention layers
    (transformers: one attention layer at a time); a window of DeltaNet layers only changes nothing."""
    e, prompt, img = mm
    kw = dict(prompt=prompt, images=[img], question="What is this?")
    for row, window in ((0, range(2, 5)), (1, range(5, 8))):  # layer 3; layer 7
        with e.knockout("Image->Last", layers=window, **kw):
            got = e.logits(prompt, images=[img])
        assert maxabs(got, heads_ref["image_last_logits_last"][row]) <= 1e-3
    with e.knockout("Image->Last", layers=range(0, 3), **kw):
        assert maxabs(e.logits(prompt, images=[img]), ref["logits_last"]) <= 1e-3


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


def test_head_ranking_rows_are_the_attention_layers(mm, ref, tmp_path):
    """RAM at the last prompt position over the left half of the image: [2 attention layers, 4
    heads] rows named by `layers`, equal to the relevance-weighted transformers attention row."""
    from corehead import Probe
    from corehead.ram import HeadRanking, relevance_vectors

    e, prompt, img = mm
    probe = Probe(image=img, question="What is this?", prompt=prompt, bbox=[0, 0, 80, 100])
    ranking = e.rank_heads([probe], query="last", progress=False)
    assert ranking.ram.shape == (2, 4) and ranking.layers == [3, 7] and ranking.layer_ids == [3, 7]
    n = len(ref["prompt_ids"])
    r, _ = relevance_vectors(e, probe, prompt, e.load_images([img]), n)
    assert r.sum() > 0 and set(np.nonzero(r)[0]) <= set(ref["visual_positions"].tolist())
    want = np.einsum("lhk,k->lh", ref["attn_last"].astype(np.float64), r)
    assert maxabs(ranking.ram, want) <= 1e-4
    top = ranking.top(0.25)
    assert len(top) == 2 and all(layer in (3, 7) for layer, _ in top)
    with e.ablated(top):  # a ranking's heads feed the interventions and the sparse cache as they are
        assert np.isfinite(e.logits(prompt, images=[img])).all()
    with e.sparse(ranking, core_fraction=0.25):
        assert e.kv_stats()["mode"] == "sparse"
    ranking.save(tmp_path / "r.json")
    back = HeadRanking.load(tmp_path / "r.json")
    assert back.layers == [3, 7] and back.order() == ranking.order()
    back.check_model(e.info)
    assert "    3 " in ranking.table(3) or "    7 " in ranking.table(3)


# --- files that do not fit ---------------------------------------------------------------------


@pytest.mark.parametrize("model,mmproj", [("qwen35", "qwen2vl"), ("qwen35", "qwen3vl"), ("qwen3vl", "qwen35"),
                                          ("qwen2vl", "qwen35")])
def test_mismatched_mmproj_names_both_files(model, mmproj):
    """The Qwen3.5 mmproj is Qwen3-VL's merger without DeepStack: a Qwen3-VL mmproj (2 DeepStack
    slices) does not fit a Qwen3.5 model, nor the other way round."""
    m, p = DATA / model / "model-f32.gguf", DATA / mmproj / "mmproj-f32.gguf"
    with pytest.raises(ModelError, match="different model") as err:
        Engine(m, mmproj=p, n_threads=2)
    assert str(p) in str(err.value) and str(m) in str(err.value)


def renamed_tensor(src: Path, dst: Path, old: str, new: str) -> Path:
    """A copy of `src` whose tensor `old` is named `new` (same length: the file stays valid)."""
    assert len(old) == len(new)
    data = src.read_bytes()
    key = struct.pack("<Q", len(old)) + old.encode()
    assert data.count(key) == 1, old
    dst.write_bytes(data.replace(key, struct.pack("<Q", len(new)) + new.encode()))
    return dst


def without_tensor(src: Path, dst: Path, name: str) -> Path:
    """A copy of the GGUF `src` without tensor `name` (gguf-py's gguf_new_metadata copy)."""
    r = gguf.GGUFReader(str(src))
    r.tensors = [t for t in r.tensors if t.name != name]
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    copy_with_new_metadata(r, w, {}, [])
    return dst


@pytest.mark.parametrize("name", ["blk.0.ssm_a", "blk.4.ssm_conv1d.weight", "blk.6.attn_qkv.weight",
                                  "blk.2.ssm_norm.weight", "blk.3.attn_q.weight"])
def test_missing_tensors_name_the_file_and_the_tensor(tmp_path, name):
    bad = without_tensor(MODEL, tmp_path / "bad.gguf", name)
    with pytest.raises(ModelError, match=f"bad.gguf: missing tensor '{name}'"):
        Engine(bad, n_threads=2)


def test_a_deltanet_tensor_in_an_attention_layer_is_refused(tmp_path):
    """Layer 3 is an attention layer (attention.recurrent_layers): a DeltaNet tensor there means
    the file and its layer pattern disagree."""
    bad = renamed_tensor(MODEL, tmp_path / "bad.gguf", "blk.0.attn_gate.weight", "blk.3.attn_gate.weight")
    with pytest.raises(ModelError, match="bad.gguf: unexpected tensor 'blk.3.attn_gate.weight'"):
        Engine(bad, n_threads=2)


@pytest.mark.parametrize("key,value,match", [
    ("qwen35.ssm.time_step_rank", 3, "not a multiple"),
    ("qwen35.ssm.inner_size", 48, "inner_size"),
    ("qwen35.ssm.conv_kernel", 0, "conv_kernel"),
    ("qwen35.ssm.state_size", 8, "attn_qkv|ssm_norm|state"),
])
def test_bad_deltanet_metadata_is_refused(tmp_path, key, value, match):
    bad = with_uint32(MODEL, tmp_path / "meta.gguf", key, value)
    with pytest.raises(ModelError, match=match) as err:
        Engine(bad, n_threads=2)
    assert "meta.gguf" in str(err.value)


def test_a_model_without_attention_layers_is_refused(tmp_path):
    """attention.recurrent_layers all true: no layer has heads (a bool array: flip the two false bytes)."""
    data = bytearray(MODEL.read_bytes())
    name = b"qwen35.attention.recurrent_layers"
    at = data.find(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    typ, item, count = struct.unpack_from("<IIQ", data, at)
    assert (typ, item, count) == (9, 7, 8)  # array of 8 bools
    flags = at + 16
    assert list(data[flags:flags + 8]) == [1, 1, 1, 0, 1, 1, 1, 0]
    data[flags:flags + 8] = bytes([1] * 8)
    bad = tmp_path / "all_recurrent.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="no attention layer") as err:
        Engine(bad, n_threads=2)
    assert "all_recurrent.gguf" in str(err.value)


# --- Qwen3.5-MoE (qwen35moe): the same hybrid with routed experts + a gated shared expert ------------

MOE = DATA / "qwen35moe"


def rel(got, want) -> float:
    return maxabs(got, want) / float(np.abs(want).max())


def test_moe_text_logits_prefill_and_greedy_match_transformers():
    """8 experts (2 routed per token, renormalized) and a shared expert scaled by
    sigmoid(gate · h) in every layer; greedy 16 tokens equal. (Logits up to ~38; max |Δ| 5.4e-4.)"""
    r, m = np.load(MOE / "ref.npz"), meta("qwen35moe")
    with Engine(MOE / "model-f32.gguf", n_threads=2) as e:
        info = e.info
        assert info["arch"] == "qwen35moe" and list(info["attention_layers"]) == [3, 7]
        assert (info["n_expert"], info["n_expert_used"]) == (m["moe"]["num_experts"], m["moe"]["num_experts_per_tok"])
        for p in TEXT_PROMPTS:
            got = e.logits(r[p + "prompt_ids"], all_positions=True)
            assert rel(got, r[p + "logits_all"]) <= 1e-3, p
            want = r[p + "greedy_ids"].tolist()
            assert e.generate_ids(r[p + "prompt_ids"], max_tokens=len(want), stop_at_eog=False) == want
        one = e.logits(r["p1_prompt_ids"], all_positions=True)
    with Engine(MOE / "model-f32.gguf", n_threads=2, n_batch=5) as chunked:
        assert rel(chunked.logits(r["p1_prompt_ids"], all_positions=True), one) <= 2e-5


def test_moe_heads_match_transformers():
    """Zero ablation, knockout and CoRe-sparse on the MoE model's attention layers (tools/refs/qwen35.py):
    within 7e-5 of the logits' scale measured."""
    r, h, sp = (np.load(MOE / f) for f in ("ref.npz", "heads_ref.npz", "sparse_ref.npz"))
    prompt, img = meta("qwen35moe")["prompt"], str(MOE / "image.png")
    with Engine(MOE / "model-f32.gguf", mmproj=MOE / "mmproj-f32.gguf", n_threads=2) as e:
        for key in ("zeroA", "zeroB"):
            with e.ablated([tuple(x) for x in h[key + "_heads"].tolist()]):
                assert rel(e.logits(prompt, images=[img], all_positions=True), h[key + "_logits_all"]) <= 1e-3, key
        with e.ablated([tuple(x) for x in h["after_heads"].tolist()], method="knockout"):
            assert rel(e.logits(prompt, images=[img], all_positions=True), h["after_logits_all"]) <= 1e-3
            # 2e-4, not 1e-4: three Gated DeltaNet layers and the MoE router run ahead of each attention
            # layer, and their f32 rounding depends on the host's SIMD width (AMD EPYC, AVX2: 1.16e-4 on a
            # knocked-out head's 0.557 weight; 7e-5 elsewhere)
            assert maxabs(e.attention(prompt, images=[img], positions=range(len(r["prompt_ids"]))),
                          h["after_attn_all"]) <= 2e-4
        core = [(layer, int(kv) * 2) for layer, kv in zip((3, 7), sp["core_kv"].tolist())]
        with e.sparse(core, sink=int(sp["sink"].item())):
            assert rel(e.logits(prompt, images=[img], all_positions=True), sp["logits_all"]) <= 1e-3
