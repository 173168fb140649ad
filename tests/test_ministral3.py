"""Ministral 3 text against transformers: the `mistral3` arch with YaRN RoPE and the Llama 4 query
temperature (tests/data/ministral3, tools/fixtures/mistral3.py build_ministral3). The fixture's
original context is 16 positions, so the temperature 1 + 0.1 log(1 + floor(pos / 16)) steps at 16,
32, 48, 64 inside its prompts. The family-parametrized tests (test_vision, test_multimodal_heads,
test_sparse, test_ablation, ...) run on it too; these add the text-only prompt at every position,
prefills in small batches and decodes past a step, what breaks without each of the two mechanisms,
and where llama.cpp reads the file differently from transformers."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

from corehead import Engine
from tests.families import DATA, meta

D = DATA / "ministral3"
ORIG = 16  # original_max_position_embeddings
TOL = 1e-3  # relative to max |logit|, as the other families' f32 logits
PEER_TOL = 5e-3  # llama.cpp (f16 K/V) against transformers


def ref():
    return np.load(D / "ref.npz")


def rel_rows(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """max |got - want| per position over max |want| (whole array)."""
    return np.abs(got - want).max(axis=-1) / np.abs(want).max()


def relabelled(src: Path, dst: Path, set_kv: dict[str, MetadataDetails], drop: tuple[str, ...] = ()) -> Path:
    """A copy of the GGUF `src` with keys set / dropped (gguf-py's gguf_new_metadata)."""
    r = gguf.GGUFReader(str(src))
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    copy_with_new_metadata(r, w, dict(set_kv), list(drop))
    return dst


def f32(v: float) -> MetadataDetails:
    return MetadataDetails(gguf.GGUFValueType.FLOAT32, v)


def text_logits(path: Path, n_batch: int = 512) -> np.ndarray:
    with Engine(path, n_threads=2, n_batch=n_batch) as eng:
        return eng.logits(ref()["text_prompt_ids"], all_positions=True)


def test_converter_writes_yarn_and_the_temperature():
    """The pinned converter's Ministral 3 path: YaRN keys from rope_parameters, mscale_all_dim as
    yarn_log_multiplier and llama_4_scaling_beta as attention.temperature_scale."""
    rp = meta("ministral3")["rope_parameters"]
    r = gguf.GGUFReader(str(D / "model-f32.gguf"))
    kv = {f.name: f.contents() for f in r.fields.values() if f.name.startswith("mistral3.")}
    assert kv["mistral3.rope.scaling.type"] == "yarn"
    assert kv["mistral3.rope.scaling.original_context_length"] == rp["original_max_position_embeddings"] == ORIG
    np.testing.assert_allclose([kv["mistral3.rope.scaling.factor"], kv["mistral3.rope.freq_base"],
                                kv["mistral3.rope.scaling.yarn_beta_fast"], kv["mistral3.rope.scaling.yarn_beta_slow"],
                                kv["mistral3.rope.scaling.yarn_log_multiplier"],
                                kv["mistral3.attention.temperature_scale"]],
                               [rp["factor"], rp["rope_theta"], rp["beta_fast"], rp["beta_slow"], rp["mscale_all_dim"],
                                rp["llama_4_scaling_beta"]], rtol=1e-7)


@pytest.mark.parametrize("n_batch", [512, 7])
def test_text_logits_at_every_position_match_transformers(n_batch):
    """A 42-token text prompt (temperature steps at 16 and 32). n_batch 7: six prefill batches, whose
    rows take their temperature from their absolute positions, not their place in the batch."""
    r = ref()
    got = text_logits(D / "model-f32.gguf", n_batch)
    want = r["text_logits_all"]
    assert got.shape == want.shape and len(want) > 2 * ORIG
    d = rel_rows(got, want)
    assert d.max() <= TOL, f"worst position {d.argmax()}: {d.max():.2e}"
    assert d[ORIG:].max() <= TOL  # (the positions past the original context, named)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_f16_text_logits_at_every_position():
    r = ref()
    got, want = text_logits(D / "model-f16.gguf"), r["text_logits_all"]
    assert rel_rows(got, want).max() <= 2e-2
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_text_attention_matches_transformers():
    """The attention taps see the tempered queries (transformers' attention weights do)."""
    r = ref()
    ids = r["text_prompt_ids"]
    with Engine(D / "model-f32.gguf", n_threads=2) as eng:
        got = eng.attention(ids, positions=range(len(ids)))  # [L, H, T, T]
    want = r["text_attn_all"]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_text_greedy_decode_crosses_a_temperature_step(dtype):
    """16 greedy tokens after the 42-token prompt: decode steps at cache positions 42..56, across the
    step at 48, each one a one-row batch whose temperature comes from its cache position."""
    r = ref()
    want = r["text_greedy_ids"].tolist()
    n = len(r["text_prompt_ids"])
    assert (n - 1) // ORIG < (n + len(want) - 2) // ORIG
    with Engine(D / f"model-{dtype}.gguf", n_threads=2) as eng:
        assert eng.generate_ids(r["text_prompt_ids"], max_tokens=len(want), stop_at_eog=False) == want


def test_without_the_temperature_only_positions_past_the_original_context_change(tmp_path):
    """The temperature is 1 below position 16, so dropping attention.temperature_scale leaves those
    rows bit-identical and moves every later one far beyond the tolerance: the fixture tells a
    missing (or mis-positioned) temperature apart."""
    no_temp = relabelled(D / "model-f32.gguf", tmp_path / "no-temp.gguf", {},
                         drop=("mistral3.attention.temperature_scale",))
    want = ref()["text_logits_all"]
    with_t, without = text_logits(D / "model-f32.gguf"), text_logits(no_temp)
    np.testing.assert_array_equal(without[:ORIG], with_t[:ORIG])
    assert rel_rows(without, want)[ORIG:].min() > 10 * TOL


def test_linear_scaling_instead_of_yarn_is_far_off(tmp_path):
    """Linear scaling by the same factor (YaRN without its ramp and attention factor) misses the
    reference at every position but the first (position 0 is not rotated)."""
    lin = relabelled(D / "model-f32.gguf", tmp_path / "linear.gguf",
                     {"mistral3.rope.scaling.type": MetadataDetails(gguf.GGUFValueType.STRING, "linear")})
    d = rel_rows(text_logits(lin), ref()["text_logits_all"])
    assert d[0] <= TOL and d[1:].max() > 10 * TOL


def test_given_attention_factor_follows_transformers_not_llama_cpp(tmp_path, run_peer):
    """A config that gives YaRN's attention_factor (converter: rope.scaling.yarn_attn_factor) is
    used as given by transformers; llama.cpp replaces it by get_mscale(factor) = 1 + 0.1 ln 4 (its
    llama_context overwrites yarn_attn_factor whenever YaRN is on). Here the given factor is 1, the
    value the fixture's mscale = mscale_all_dim = 1 give, so transformers' logits are the fixture's
    reference: corehead matches it on both files, llama.cpp only on the original. (The peer takes
    the YaRN betas from the file, as llama.cpp's own tools do; llama-cpp-python's defaults would
    override them.)"""
    given = relabelled(D / "model-f32.gguf", tmp_path / "given-factor.gguf",
                       {"mistral3.rope.scaling.yarn_attn_factor": f32(1.0)},
                       drop=("mistral3.rope.scaling.yarn_log_multiplier",))
    r = ref()
    want = r["text_logits_all"][-1]
    ours = text_logits(given)[-1]
    assert rel_rows(ours, want) <= TOL
    ids = r["text_prompt_ids"].tolist()
    orig, changed = (np.array(run_peer({"model": str(p), "ops": [{"op": "logits", "ids": ids}]})["results"][0])
                     for p in (D / "model-f32.gguf", given))
    # The peer keeps K/V in f16 (its default): 1e-3-level differences on any fixture.
    assert rel_rows(orig, want) <= PEER_TOL  # llama.cpp agrees on the converter's own file
    assert rel_rows(changed, want) > 10 * PEER_TOL  # and not on the given factor

