"""What Qwen3-VL adds beyond the generic vision tests (which run on the qwen3vl and qwen3vlmoe
fixtures too): DeepStack (the mmproj emits extra visual features that the text model adds after its
first layers), interleaved M-RoPE, mixture-of-experts FFNs, and the files that do not fit together.

"A head" on these models is what it is everywhere in corehead: an attention head of a text layer
(info n_layer x n_head). DeepStack features are residual additions and experts are FFNs, so
neither is a head; taps, ablation, knockout and CoRe-sparse are checked against transformers on
both fixtures by test_multimodal_heads.py, test_ablation.py and test_sparse.py."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from corehead import Engine, ModelError
from tests.families import DATA, meta

FAMILIES = ["qwen3vl", "qwen3vlmoe"]


def rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def with_uint32(src: Path, dst: Path, key: str, value: int) -> Path:
    """A copy of `src` whose uint32 metadata `key` holds `value` (the bytes after the key name are
    the type id GGUF_TYPE_UINT32 = 4, then the value)."""
    data = bytearray(src.read_bytes())
    name = key.encode()
    at = data.find(struct.pack("<Q", len(name)) + name)
    assert at >= 0, key
    at += 8 + len(name)
    assert struct.unpack_from("<I", data, at)[0] == 4, "not a uint32 key"
    struct.pack_into("<I", data, at + 4, value)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("family", FAMILIES)
def test_info_reports_deepstack_and_experts(family):
    d = DATA / family
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_threads=2) as e:
        info = e.info
    assert info["n_deepstack"] == len(meta(family)["deepstack_visual_indexes"]) == 2
    assert info["vision"]["n_deepstack"] == 2 and info["vision"]["n_out"] == info["n_embd"]
    moe = meta(family).get("moe")
    want = (moe["num_experts"], moe["num_experts_per_tok"]) if moe else (0, 0)
    assert (info["n_expert"], info["n_expert_used"]) == want


@pytest.mark.parametrize("family", FAMILIES)
def test_deepstack_features_survive_image_chunks(family):
    """The DeepStack slices are cut with their image rows: an image split over 16-token batches
    gives transformers' logits as a single batch does."""
    d, r = DATA / family, np.load(DATA / family / "ref.npz")
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_threads=2, n_batch=16) as e:
        every = e.logits(meta(family)["prompt"], images=[d / "image.png"], all_positions=True)
    assert rel(every, r["logits_all"]) <= 3e-3


def test_mrope_positions_follow_transformers():
    """Interleaved M-RoPE uses the same 3-D positions as Qwen2-VL for images (transformers'
    get_rope_index): checked through the logits at every position, and here the recorded ids."""
    r = np.load(DATA / "qwen3vl" / "ref.npz")
    pos = r["mrope_position_ids"]  # [3, n]
    vis = r["visual_positions"]
    t, gh, gw = r["image_grid_thw"]
    start = vis[0]
    k = np.arange(len(vis))
    np.testing.assert_array_equal(pos[0, vis], np.full(len(vis), start))
    np.testing.assert_array_equal(pos[1, vis], start + k // (gw // 2))
    np.testing.assert_array_equal(pos[2, vis], start + k % (gw // 2))
    assert pos[0, vis[-1] + 1] == start + max(gh, gw) // 2


@pytest.mark.parametrize("model,mmproj", [("qwen2vl", "qwen3vl"), ("qwen3vl", "qwen2vl"), ("qwen3vlmoe", "qwen25vl"),
                                          ("qwen3vl", "gemma3vl")])
def test_mismatched_files_name_both(model, mmproj):
    m, p = DATA / model / "model-f32.gguf", DATA / mmproj / "mmproj-f32.gguf"
    with pytest.raises(ModelError, match="different model") as err:
        Engine(m, mmproj=p, n_threads=2)
    assert str(p) in str(err.value) and str(m) in str(err.value)


def test_the_moe_text_model_takes_the_dense_mmproj():
    """Qwen3-VL dense and MoE share one projector type: a qwen3vl_merger mmproj feeds either."""
    d = DATA / "qwen3vlmoe"
    with Engine(d / "model-f32.gguf", mmproj=DATA / "qwen3vl" / "mmproj-f32.gguf", n_threads=2) as e:
        assert np.isfinite(e.logits(meta("qwen3vlmoe")["prompt"], images=[d / "image.png"])).all()


def test_deepstack_count_mismatch_is_refused(tmp_path):
    d = DATA / "qwen3vl"
    bad = with_uint32(d / "model-f32.gguf", tmp_path / "model.gguf", "qwen3vl.n_deepstack_layers", 1)
    with pytest.raises(ModelError, match="DeepStack") as err:
        Engine(bad, mmproj=d / "mmproj-f32.gguf", n_threads=2)
    assert "mmproj-f32.gguf" in str(err.value) and "model.gguf" in str(err.value)
    too_many = with_uint32(d / "model-f32.gguf", tmp_path / "model5.gguf", "qwen3vl.n_deepstack_layers", 5)
    with pytest.raises(ModelError, match="n_deepstack_layers"):
        Engine(too_many, n_threads=2)


@pytest.mark.parametrize("key,value,match", [("qwen3vlmoe.expert_count", 4, "ffn_gate_inp"),
                                             ("qwen3vlmoe.expert_used_count", 9, "expert_used_count"),
                                             ("qwen3vlmoe.expert_used_count", 0, "expert_used_count")])
def test_expert_count_mismatch_is_refused(tmp_path, key, value, match):
    bad = with_uint32(DATA / "qwen3vlmoe" / "model-f32.gguf", tmp_path / "moe.gguf", key, value)
    with pytest.raises(ModelError, match=match) as err:
        Engine(bad, n_threads=2)
    assert "moe.gguf" in str(err.value)


def test_small_images_are_upscaled_as_transformers_does_not_as_mtmd(run_peer):
    """Qwen3-VL's processor upscales images under 65536 pixels (shortest_edge of the released
    preprocessor_config); llama.cpp's mtmd only asks for 8 tokens, so it lays the 160x100 fixture
    image out as 5x3 = 15 tokens where transformers (and corehead) use 11x7 = 77."""
    d, m = DATA / "qwen3vl", meta("qwen3vl")
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_threads=2) as e:
        ours = len(e.visual_token_positions(m["prompt"], [d / "image.png"]))
    assert ours == m["n_image_tokens"] == 77
    op = {"op": "mtmd_image_tokens", "mmproj": str(d / "mmproj-f32.gguf"), "prompt": m["prompt"],
          "image": str(d / "image.png")}
    assert run_peer({"model": str(d / "model-f32.gguf"), "ops": [op]})["results"] == [[15]]
