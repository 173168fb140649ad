"""Zero-ablation of Gated DeltaNet value heads (Engine.ablated_deltanet, docs/qwen35.md) on the
hybrid Qwen3.5 fixtures, against transformers: tests/data/<family>/deltanet_ablation_ref.npz
(tools/refs/deltanet.py: a forward pre-hook on the layer's out_proj zeroing the value head's slice
of its input, f32 eager; keys A_* and B_*, two sets of (layer, value head) pairs in transformers'
numbering). The fixture has 2 key / 4 value heads per DeltaNet layer, so transformers' value heads
1 and 2 are the file's 2 and 1: a wrong mapping fails the logits."""

from __future__ import annotations

import numpy as np
import pytest

from corehead import Engine
from tests.families import DATA, meta

FAMILIES = ["qwen35", "qwen35moe"]
SETS = ["A", "B"]
DELTANET_LAYERS = [0, 1, 2, 4, 5, 6]


def maxabs(got, want) -> float:
    return float(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)).max())


def rel(got, want) -> float:
    return maxabs(got, want) / float(np.abs(want).max())


def pairs(a) -> list[tuple[int, int]]:
    return [tuple(x) for x in a.tolist()]


@pytest.fixture(scope="module", params=FAMILIES)
def fam(request):
    d = DATA / request.param
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_threads=2) as e:
        yield request.param, e, np.load(d / "ref.npz"), np.load(d / "deltanet_ablation_ref.npz")


@pytest.mark.parametrize("which", SETS)
def test_logits_match_transformers(fam, which):
    """Every position of the text prompt and the last of the image prompt: measured max |Δ| 9.0e-4
    of logits up to ~35 (rel 2.7e-5, docs/qwen35.md); the ablation moves the logits by far more."""
    name, e, ref, dref = fam
    heads = pairs(dref[which + "_heads"])
    want = dref[which + "_text_logits_all"]
    with e.ablated_deltanet(heads):
        assert e.active_deltanet_ablation == heads
        got = e.logits(ref["text_prompt_ids"], all_positions=True)
        mm = e.logits(meta(name)["prompt"], images=[str(DATA / name / "image.png")])
    assert e.active_deltanet_ablation == []
    assert rel(got, want) <= 1e-3, rel(got, want)
    assert (got.argmax(-1) == want.argmax(-1)).all()
    assert rel(mm, dref[which + "_mm_logits_last"]) <= 1e-3
    # the reference differs from the unablated model by much more than the tolerance
    assert rel(want, ref["text_logits_all"]) > 1e-2


@pytest.mark.parametrize("which", SETS)
def test_decode_after_an_ablated_prefill_continues_the_ablated_model(fam, which):
    """Prefill 3 tokens, then one token per step: every step is transformers' ablated full-sequence
    row (the state written under the ablation is the ablated model's); greedy 16 tokens equal."""
    _, e, ref, dref = fam
    heads = pairs(dref[which + "_heads"])
    ids, want = ref["text_prompt_ids"].tolist(), dref[which + "_text_logits_all"]
    with e.ablated_deltanet(heads):
        assert rel(e.logits(ids[:3]), want[2]) <= 1e-3
        for i in range(3, len(ids)):
            assert rel(e.append([ids[i]]), want[i]) <= 1e-3, i
        greedy = e.generate_ids(ids, max_tokens=16, stop_at_eog=False)
    assert greedy == dref[which + "_text_greedy_ids"].tolist()


def test_no_ablation_is_bit_identical(fam):
    _, e, ref, dref = fam
    ids = ref["p1_prompt_ids"]
    plain = e.logits(ids, all_positions=True)
    with e.ablated_deltanet([]):
        np.testing.assert_array_equal(e.logits(ids, all_positions=True), plain)
    with e.ablated_deltanet(pairs(dref["A_heads"])):
        assert maxabs(e.logits(ids, all_positions=True), plain) > 1e-2
        with e.ablated_deltanet([]):  # nested: cleared inside, restored on leaving
            np.testing.assert_array_equal(e.logits(ids, all_positions=True), plain)
        assert e.active_deltanet_ablation == pairs(dref["A_heads"])
    np.testing.assert_array_equal(e.logits(ids, all_positions=True), plain)


def test_composes_with_attention_head_interventions(fam):
    """Setting or clearing attention-head interventions keeps the DeltaNet ablation, and the other
    way round."""
    _, e, ref, dref = fam
    ids = ref["text_prompt_ids"]
    heads = pairs(dref["B_heads"])
    with e.ablated_deltanet(heads):
        dn = e.logits(ids, all_positions=True)
        with e.ablated([(3, 1)]):
            both = e.logits(ids, all_positions=True)
            with e.ablated_deltanet([]):
                attn_only = e.logits(ids, all_positions=True)
        np.testing.assert_array_equal(e.logits(ids, all_positions=True), dn)
    with e.ablated([(3, 1)]):
        np.testing.assert_array_equal(e.logits(ids, all_positions=True), attn_only)
    assert maxabs(both, dn) > 1e-3 and maxabs(both, attn_only) > 1e-3
    assert rel(dn, dref["B_text_logits_all"]) <= 1e-3


@pytest.mark.parametrize("value_heads, match", [
    ([(3, 0)], r"layer 3 is a full-attention layer .*layers are 0, 1, 2, 4, 5, 6, each with value heads 0\.\.3"),
    ([(7, 1)], r"layer 7 is a full-attention layer"),
    ([(0, 4)], r"value head 4 is out of range.*value heads 0\.\.3"),
    ([(1, -1)], r"value head -1 is out of range"),
    ([(8, 0)], r"layer 8 is out of range.*layers are 0, 1, 2, 4, 5, 6"),
    ([(-1, 0)], r"layer -1 is out of range"),
    ([(2, 1), (2, 1)], r"\(2, 1\) is listed twice"),
])
def test_bad_pairs_raise_and_keep_the_current_ablation(fam, value_heads, match):
    _, e, ref, dref = fam
    ids = ref["text_prompt_ids"]
    with e.ablated_deltanet(pairs(dref["A_heads"])):
        before = e.logits(ids)
        with pytest.raises(ValueError, match=match):
            with e.ablated_deltanet(value_heads):
                pass
        assert e.active_deltanet_ablation == pairs(dref["A_heads"])
        np.testing.assert_array_equal(e.logits(ids), before)


@pytest.mark.parametrize("value_heads", [[0, 1], [(0, 1, 2)], [("0", 1)], [(0, 1.0)], [(True, 1)], "01", None, 3])
def test_malformed_value_heads_raise_type_error(fam, value_heads):
    _, e, _, _ = fam
    with pytest.raises(TypeError, match="value_heads must be"):
        with e.ablated_deltanet(value_heads):
            pass


def test_info_counts_the_value_heads(fam):
    _, e, _, _ = fam
    info = e.info
    assert info["deltanet_value_heads"] == 4  # linear_num_value_heads of the fixture (tools/fixtures/qwenvl.py)
    assert sorted(set(range(info["n_layer"])) - set(info["attention_layers"])) == DELTANET_LAYERS


def test_a_model_without_deltanet_layers_refuses():
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as e:
        assert e.info["deltanet_value_heads"] == 0
        with pytest.raises(ValueError, match=r"has no Gated DeltaNet layers.*Engine\.ablated"):
            with e.ablated_deltanet([(0, 0)]):
                pass
        with e.ablated_deltanet([]):  # nothing to ablate: allowed
            pass
