"""Taps, head interventions and RAM on multimodal prompts, against transformers references
(tests/data/<family>/ref.npz and ablation_ref.npz; see tests/data/ABLATION.md).

Attention and RAM agree to 1e-4 on every family. The llava and gemma3vl mmproj files keep some
weights in F16 even in the "f32" files (a converter quirk: tests/data/README.md); their
references were computed by transformers with exactly those f16 weights, applied as ggml applies
an F16 weight (tools/fixtures/mm.py: ggml_f16), so the same tolerance holds there."""

from __future__ import annotations

import numpy as np
import pytest

from corehead import Probe, rank_heads
from corehead.probes import box_relevance
from tests.families import DATA, VISION, meta, vision_engine, with_file

ATOL = 1e-4  # attention probabilities, RAM, visual mass


@pytest.fixture(scope="module", params=with_file("ablation_ref.npz", VISION))
def fx(request):
    fam = request.param
    d = DATA / fam
    with vision_engine(fam) as eng:
        yield (fam, eng, meta(fam)["prompt"], str(d / "image.png"), np.load(d / "ref.npz"),
               np.load(d / "ablation_ref.npz"))


def test_attention_with_images_matches_transformers(fx):
    fam, eng, prompt, img, ref, _ = fx
    n = len(ref["prompt_ids"])
    got = eng.attention(prompt, images=[img], positions=range(n))
    assert np.abs(got - ref["attn_all"]).max() <= ATOL
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_knockout_of_visual_keys_for_all_queries_matches_transformers(fx):
    fam, eng, prompt, img, ref, abl = fx
    n = len(ref["prompt_ids"])
    heads = [tuple(h) for h in abl["knock_heads"].tolist()]
    with eng.ablated(heads, method="knockout", queries="all"):
        attn = eng.attention(prompt, images=[img], positions=range(n))
        logits = eng.logits(prompt, images=[img], all_positions=True)
    vis = ref["visual_positions"]
    for layer, h in heads:
        assert np.abs(attn[layer, h][:, vis]).max() == 0.0
    assert np.abs(attn - abl["knock_attn_all"]).max() <= ATOL
    want = abl["knock_logits_all"]
    assert np.abs(logits - want).max() <= 1e-3 * np.abs(want).max()


@pytest.mark.parametrize("which", ["zeroA", "zeroB"])
def test_zero_ablation_with_images_matches_transformers(fx, which):
    fam, eng, prompt, img, ref, abl = fx
    with eng.ablated([tuple(h) for h in abl[f"{which}_heads"].tolist()]):
        got = eng.logits(prompt, images=[img], all_positions=True)
    want = abl[f"{which}_logits_all"]
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


def test_rank_heads_with_image_boxes_equals_numpy(fx):
    """RAM for three boxes on the fixture image, query = the answer positions (teacher forcing
    the fixture's 3 greedy tokens) and query = last, against docs/architecture.md §4 computed with numpy
    from transformers' attention and independently computed relevance."""
    fam, eng, prompt, img, ref, abl = fx
    from PIL import Image

    w, h = Image.open(img).size
    boxes = [[0, 0, w / 2, h / 2], [w / 3, h / 4, w, h], [w / 4, 0, w / 4 + 9.5, h / 3]]
    answer = eng.detokenize(abl["answer_ids"].tolist())
    tokens_boxes = eng.visual_token_boxes(img)
    vis = ref["visual_positions"]
    n = len(ref["prompt_ids"])
    for query in ("last", "answer"):
        probes = [Probe(image=img, question="", prompt=prompt, answer=answer, bbox=b) for b in boxes]
        full = eng.multimodal_tokens(prompt + answer, [img]) if query == "answer" else None
        if query == "answer":  # the reference's answer is text that re-tokenizes to the same ids
            assert full[n:].tolist() == abl["answer_ids"].tolist() and len(full) == n + 3
        ranking = rank_heads(eng, probes, query=query, progress=False)
        A = abl["answer_attn_all"] if query == "answer" else ref["attn_all"]
        rows = list(range(n - 1, n + 2)) if query == "answer" else [n - 1]
        rams, vms, chances = [], [], []
        for b in boxes:
            # Independent relevance: single-box rectangle intersection.
            x0, y0, x1, y1 = np.asarray(b, float)
            tb = tokens_boxes
            inter = (np.clip(np.minimum(tb[:, 2], x1) - np.maximum(tb[:, 0], x0), 0, None) *
                     np.clip(np.minimum(tb[:, 3], y1) - np.maximum(tb[:, 1], y0), 0, None))
            r_vis = inter / ((tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1]))
            np.testing.assert_allclose(box_relevance(tb, np.array([b], float)), r_vis, atol=1e-9)
            r = np.zeros(A.shape[-1])
            r[vis] = r_vis
            v = np.zeros(A.shape[-1])
            v[vis] = 1.0
            rams.append(np.einsum("lhtk,k->lh", A[:, :, rows], r) / len(rows))
            vms.append(np.einsum("lhtk,k->lh", A[:, :, rows], v) / len(rows))
            chances.append(r_vis.mean())
        np.testing.assert_allclose(ranking.ram, np.mean(rams, 0), atol=ATOL)
        np.testing.assert_allclose(ranking.visual_mass, np.mean(vms, 0), atol=ATOL)
        np.testing.assert_allclose(ranking.focus, np.mean(rams, 0) / np.mean(vms, 0), atol=ATOL)
        assert ranking.chance == pytest.approx(np.mean(chances))
