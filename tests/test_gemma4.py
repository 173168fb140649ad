"""Gemma 4 text decoder (`gemma4`) against transformers 5.23 eager f32 on the tiny fixture of
tests/data/gemma4 (python -m tools.fixtures.make gemma4; ablation_ref.npz from
python -m tools.refs.ablation gemma4). The fixture has 6 layers [S, F, S, S, S, F] (S: sliding window
8, head size 16; F: global, head size 32, proportional RoPE), the last 2 sharing K/V (layer 4 reads
layer 3's, layer 5 reads layer 1's), per-layer embeddings, layer scalars and logit softcapping.

Where transformers and llama.cpp differ, corehead follows transformers:
- KV sharing source: transformers' `kv_sharing_modes` give a sharing layer the K/V of the *last
  earlier unshared layer of its own kind*; llama.cpp (llama-model.cpp, the gemma4 `reuse`
  callback) takes layer n_layer_kv_from_start - 2 for sliding and - 1 for global layers, which is
  the same only when the unshared part ends with [S, F] (the released checkpoints). The fixture
  ends its unshared part with [F, S, S] so that the two rules disagree (llama.cpp would give layer
  4 the K/V of layer 2 and layer 5 those of layer 3); the logits below match transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from corehead import Engine, ModelError, Probe
from corehead.ram import relevance_vectors

DATA = Path(__file__).parent / "data"
D = DATA / "gemma4"
META = json.loads((D / "meta.json").read_text())
ATOL = 1e-4  # f32 logits / probabilities vs transformers eager f32


@pytest.fixture(scope="module")
def ref():
    return np.load(D / "ref.npz")


@pytest.fixture(scope="module")
def abl():
    return np.load(D / "ablation_ref.npz")


@pytest.fixture(scope="module")
def eng():
    with Engine(D / "model-f32.gguf", n_threads=2) as e:
        yield e


def test_fixture_exercises_kv_sharing_ple_and_the_sliding_window(ref):
    assert META["kv_source_layers"] == [0, 1, 2, 3, 3, 1]  # transformers' kv_sharing_modes, not llama.cpp's rule
    assert META["layer_types"][4] == META["layer_types"][3] and META["layer_types"][5] == META["layer_types"][1]
    assert len(ref["prompt_ids"]) > META["sliding_window"] and len(ref["p1_prompt_ids"]) > 5 * META["sliding_window"]
    with Engine(D / "model-f32.gguf", n_threads=1) as e:
        info = e.info
        assert (info["arch"], info["n_layer"], info["n_head"], info["n_head_kv"]) == ("gemma4", 6, 4, 2)


@pytest.mark.parametrize("prefix", ["", "p1_", "p2_", "p3_"])
def test_logits_at_every_position_equal_transformers(eng, ref, prefix):
    got = eng.logits(ref[prefix + "prompt_ids"], all_positions=True)
    want = ref[prefix + "logits_all"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= ATOL  # measured 3.4e-5 (softcap 10: |logit| <= 10)


def test_chunked_prefill_equals_one_shot(ref):
    """Batches of 5 tokens: the sliding window (8) and the shared K/V span batch borders."""
    ids = ref["p1_prompt_ids"]
    with Engine(D / "model-f32.gguf", n_threads=2, n_batch=5) as e:
        got = e.logits(ids, all_positions=True)
    assert np.abs(got - ref["p1_logits_all"]).max() <= ATOL


def test_decode_after_prefill_equals_transformers(eng, ref):
    ids = ref["p1_prompt_ids"].tolist()
    want = ref["p1_logits_all"]
    k = 30
    last = eng.logits(ids[:k])
    assert np.abs(last - want[k - 1]).max() <= ATOL
    for i in range(k, k + 6):  # one token per step: n_past grows past the window every step
        assert np.abs(eng.append([ids[i]]) - want[i]).max() <= ATOL
    rest = eng.append(ids[k + 6:], all_positions=True)
    assert np.abs(rest - want[k + 6:]).max() <= ATOL


@pytest.mark.parametrize("prefix", ["", "p1_", "p2_"])
def test_greedy_equals_transformers(eng, ref, prefix):
    want = ref[prefix + "greedy_ids"][:8].tolist()
    assert eng.generate_ids(ref[prefix + "prompt_ids"], max_tokens=8, stop_at_eog=False) == want


def test_taps_are_each_layers_own_attention_also_where_kv_is_shared(eng, ref):
    ids = ref["prompt_ids"]
    got = eng.attention(ids)  # [L, H, 1, T], last query
    assert np.abs(got[:, :, 0] - ref["attn_last"]).max() <= ATOL
    full = eng.attention(ids, positions=list(range(len(ids))))
    assert np.abs(full - ref["attn_all"]).max() <= ATOL
    # layer 4 reads layer 3's keys with its own queries: its attention is its own
    assert np.abs(ref["attn_all"][4] - ref["attn_all"][3]).max() > 0.1


@pytest.mark.parametrize("which", ["zeroA", "zeroB"])
def test_zero_ablation_on_query_heads_equals_transformers(eng, ref, abl, which):
    heads = [tuple(h) for h in abl[which + "_heads"].tolist()]  # zeroA: a head of sharing layer 5
    with eng.ablated(heads):
        got = eng.logits(ref["prompt_ids"], all_positions=True)
    assert np.abs(got - abl[which + "_logits_all"]).max() <= ATOL
    assert np.abs(abl[which + "_logits_all"] - ref["logits_all"]).max() > 0.1  # the ablation matters


def test_knockout_equals_transformers_on_owning_and_sharing_layers(eng, ref, abl):
    """The default knockout's edges (a span's keys blocked for every query from the span's end on)
    with a text span standing in for the image, on heads of layers 0, 3 (owns K/V read by 4),
    4 and 5 (sharing): only the knocked query heads lose the span, not the layer they share with."""
    ids = ref["prompt_ids"].tolist()
    keys = abl["span_knock_keys"].tolist()
    heads = [tuple(h) for h in abl["span_knock_heads"].tolist()]
    queries = list(range(keys[-1] + 1, len(ids)))
    with eng.knockout([(queries, keys)], heads=heads):
        got = eng.logits(ids, all_positions=True)
        att = eng.attention(ids, positions=list(range(len(ids))))
    assert np.abs(got - abl["span_knock_logits_all"]).max() <= ATOL
    assert np.abs(att - abl["span_knock_attn_all"]).max() <= ATOL


def test_ram_ranking_equals_numpy_from_transformers_attention(eng, ref):
    text = META["prompts"][0]["text"]
    q, a = text[:-8], text[-8:]
    probes = [Probe(question=q, prompt=q, answer=a, span=s) for s in [(4, 14), (0, 3), (20, 31)]]
    ids = eng.tokenize(text)
    assert ids == ref["prompt_ids"].tolist()
    ranking = eng.rank_heads(probes, query="answer", progress=False)
    rams = []
    for p in probes:
        n_prompt = len(eng.tokenize(p.prompt))
        rows = list(range(n_prompt - 1, len(ids) - 1))
        r, _ = relevance_vectors(eng, p, p.prompt, [], len(ids))
        rams.append(np.einsum("lhtk,k->lh", ref["attn_all"][:, :, rows, :], r) / len(rows))
    assert ranking.ram.shape == (6, 4)
    np.testing.assert_allclose(ranking.ram, np.mean(rams, 0), atol=ATOL)


def test_core_sparse_keeps_one_kv_set_per_shared_kv_head(ref):
    """A sharing layer holds no K/V of its own: kv_stats counts 0 KV heads there, and a CoRe KV head
    named in a sharing layer (4, 0) makes the KV head it reads, (3, 0), CoRe."""
    ids = ref["prompt_ids"]
    with Engine(D / "model-f32.gguf", n_threads=2) as e:
        dense = e.logits(ids, all_positions=True)
        s = e.kv_stats()
        assert s["per_layer"]["core_kv_heads"] == [2, 2, 2, 2, 0, 0]
        # per token: the 4 owning layers (head sizes 16, 32, 16, 16) x 2 KV heads x (K + V) x 4 bytes
        # (an f32 model gets an f32 cache); counting the sharing layers too would give 36864
        assert s["groups"]["full"]["bytes"] == len(ids) * (16 + 32 + 16 + 16) * 2 * 2 * 4 == 23040
        with e.kv_mode(core_kv_heads=[(4, 0)]):
            sparse = e.logits(ids, all_positions=True)
            st = e.kv_stats()
        assert st["mode"] == "sparse"
        assert st["per_layer"]["core_kv_heads"] == [0, 0, 0, 1, 0, 0]
        assert st["per_layer"]["other_kv_heads"] == [2, 2, 2, 1, 0, 0]
        # text only: nothing is dropped, so the sparse cache computes what the dense one does
        assert np.abs(sparse - dense).max() <= 1e-5
        assert np.abs(sparse - ref["logits_all"]).max() <= ATOL


def test_mean_ablation_is_refused_with_two_head_sizes(eng, ref):
    with pytest.raises(ValueError, match="head size"):
        eng.head_output_sums(ref["prompt_ids"].tolist())


def test_mismatched_mmproj_is_a_model_error_naming_the_files():
    with pytest.raises(ModelError) as e:
        Engine(D / "model-f32.gguf", mmproj=DATA / "gemma3vl" / "mmproj-f32.gguf", n_threads=1)
    assert "mmproj-f32.gguf" in str(e.value) and "gemma4" in str(e.value)


def rewrite(src: Path, dst: Path, drop: str = "", keys: dict | None = None, add: dict | None = None) -> Path:
    """`src` rewritten by gguf-py with every tensor but `drop` (and the f32 tensors `add`) and its
    keys, `keys` replacing or adding some (a list value is written as a UINT32 array)."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    new = dict(keys or {})
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key in new:
            continue
        sub = f.types[1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), f.types[0], sub_type=sub)
    for key, value in new.items():
        if isinstance(value, list):
            w.add_key_value(key, value, gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.UINT32)
        else:
            w.add_key_value(key, value, gguf.GGUFValueType.UINT32)
    for t in r.tensors:
        if t.name != drop:
            shape = list(reversed(t.shape.tolist()))
            w.add_tensor(t.name, np.asarray(t.data), raw_shape=shape, raw_dtype=t.tensor_type)
    for name, value in (add or {}).items():
        w.add_tensor(name, np.asarray(value, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.mark.parametrize("drop", ["blk.3.attn_k.weight", "per_layer_token_embd.weight", "rope_freqs.weight"])
def test_missing_tensor_is_a_model_error_naming_file_and_tensor(tmp_path, drop):
    bad = rewrite(D / "model-f32.gguf", tmp_path / "incomplete.gguf", drop=drop)
    with pytest.raises(ModelError) as e:
        Engine(bad, n_threads=1)
    assert "incomplete.gguf" in str(e.value) and f"missing tensor '{drop}'" in str(e.value)


def test_kv_weights_in_a_sharing_layer_are_refused(tmp_path):
    """Layer 4 reads layer 3's K/V: a file that gives it its own attn_k is not this model."""
    raw = (D / "model-f32.gguf").read_bytes()
    name = b"blk.3.attn_k.weight"
    assert raw.count(name) == 1
    bad = tmp_path / "shared-with-k.gguf"
    bad.write_bytes(raw.replace(name, b"blk.4.attn_k.weight"))  # same length: the file stays valid
    with pytest.raises(ModelError) as e:
        Engine(bad, n_threads=1)
    assert "shared-with-k.gguf" in str(e.value) and "blk.4.attn_k.weight" in str(e.value)


# -- gemma4vl: the same text model with the gemma4v projector (tests/data/gemma4vl) ------------
# The generic multimodal tests (test_vision, test_sparse, ...) cover pixel values, embeddings
# (max |d| 2e-6), logits (9e-4 over 277 positions, |logit| <= 10) and the CoRe-sparse semantics
# against transformers; these pin what is Gemma 4's own.

VL = DATA / "gemma4vl"
VL_META = json.loads((VL / "meta.json").read_text())


@pytest.fixture(scope="module")
def vl():
    with Engine(VL / "model-f32.gguf", mmproj=VL / "mmproj-f32.gguf", n_threads=2) as e:
        yield e, np.load(VL / "ref.npz")


def test_image_layout_is_the_processors(vl):
    """Gemma4Processor: <|image> + one <|image|> per soft token + <image|>; 96x64 -> 480x312 px ->
    60x39 patches of 8 -> 20x13 pooled tokens."""
    eng, ref = vl
    img = VL / "image.png"
    ids = eng.multimodal_tokens(VL_META["prompt"], [img])
    np.testing.assert_array_equal(ids, ref["prompt_ids"])
    vis = eng.visual_token_positions(VL_META["prompt"], [img])
    assert len(vis) == 260 == VL_META["n_image_tokens"]
    assert ids[vis[0] - 1] == VL_META["boi_token_id"] and ids[vis[-1] + 1] == VL_META["eoi_token_id"]
    assert set(ids[vis].tolist()) == {VL_META["image_token_id"]}
    assert eng.preprocess_image(img)[0].shape == (3, 312, 480)


def test_multimodal_logits_and_embeddings_equal_transformers(vl):
    eng, ref = vl
    img = VL / "image.png"
    assert np.abs(eng.encode_image(img) - ref["image_embeds"]).max() <= 1e-4
    assert np.abs(eng.logits(VL_META["prompt"], images=[img]) - ref["logits_last"]).max() <= 2e-3


def test_multimodal_last_query_taps_equal_transformers_in_every_layer(vl):
    eng, ref = vl
    got = eng.attention(VL_META["prompt"], images=[VL / "image.png"])
    assert np.abs(got[:, :, 0] - ref["attn_last"]).max() <= ATOL


def test_multimodal_ram_ranking_equals_numpy_from_transformers(vl):
    eng, ref = vl
    img = VL / "image.png"
    q = "What is this?"
    probe = Probe(image=str(img), question=q, bbox=[10, 5, 60, 40], prompt=VL_META["prompt"])
    ranking = eng.rank_heads([probe], query="last", progress=False)
    n = len(ref["prompt_ids"])
    r, vis = relevance_vectors(eng, probe, VL_META["prompt"], [img], n)
    assert r.sum() > 0 and vis.sum() == 260
    np.testing.assert_allclose(ranking.ram, ref["attn_last"] @ r, atol=ATOL)


def test_core_sparse_with_an_image_counts_each_shared_kv_set_once(vl):
    eng, ref = vl
    img = VL / "image.png"
    n = len(ref["prompt_ids"])
    with eng.sparse([(4, 0)], sink=4):  # query head 0 of sharing layer 4 -> KV head 0 of layer 3
        eng.logits(VL_META["prompt"], images=[img])
        st = eng.kv_stats()
    assert st["per_layer"]["core_kv_heads"] == [0, 0, 0, 1, 0, 0]
    assert st["per_layer"]["other_kv_heads"] == [2, 2, 2, 1, 0, 0]
    assert st["groups"]["compact"]["tokens"] == n - 260  # every visual token is past the sinks


def test_per_layer_ffn_widths_and_kv_head_counts(tmp_path, ref):
    """use_double_wide_mlp files write feed_forward_length per layer: read as such (here all 128:
    the same model), a width that disagrees with a layer's tensors is refused; per-layer KV head
    counts (the 31B) are refused with a message that says so."""
    ok = rewrite(D / "model-f32.gguf", tmp_path / "ff.gguf", keys={"gemma4.feed_forward_length": [128] * 6})
    with Engine(ok, n_threads=2) as e:
        assert np.abs(e.logits(ref["prompt_ids"], all_positions=True) - ref["logits_all"]).max() <= ATOL
    wide = rewrite(D / "model-f32.gguf", tmp_path / "wide.gguf",
                   keys={"gemma4.feed_forward_length": [128, 128, 128, 128, 256, 256]})
    with pytest.raises(ModelError, match="blk.4.ffn_gate.weight"):
        Engine(wide, n_threads=1)
    kv = rewrite(D / "model-f32.gguf", tmp_path / "kv.gguf", keys={"gemma4.attention.head_count_kv": [2, 1] * 3})
    with pytest.raises(ModelError, match="one count per layer"):
        Engine(kv, n_threads=1)


def test_an_mmproj_with_the_audio_encoder_loads(tmp_path, vl):
    """The released E2B / E4B mmproj files also hold the audio encoder (a.*, mm.a.*): accepted and
    not used, so the image path is unchanged."""
    eng, ref = vl
    rng = np.random.default_rng(0)
    audio = {"a.blk.0.attn_q.weight": rng.normal(size=(8, 8)), "mm.a.input_projection.weight": rng.normal(size=(64, 8))}
    mm = rewrite(VL / "mmproj-f32.gguf", tmp_path / "mmproj-av.gguf", add=audio)
    with Engine(VL / "model-f32.gguf", mmproj=mm, n_threads=2) as e:
        np.testing.assert_array_equal(e.encode_image(VL / "image.png"), eng.encode_image(VL / "image.png"))
