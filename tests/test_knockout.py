"""Edge-level attention knockout (corehead.knockout) and the default knockout ("queries after the
image"), against transformers with −inf added at the blocked (head, query, key) entries before
the softmax (tests/data/<family>/knockout_ref.npz, python -m tools.refs.knockout: which edges are
blocked is computed there from the HF inputs, without corehead)."""

from __future__ import annotations

import numpy as np
import pytest

from corehead import Engine, Probe
from corehead.knockout import PRESETS, Chars, layer_windows, mask_to_ranges
from tests.families import DATA, VISION, meta, vision_engine, with_file

ATOL = 1e-4  # attention probabilities


def close(got, want) -> float:
    """max |d| relative to the reference's scale (the ablation tests' 1e-3 bound)."""
    return float(np.abs(np.asarray(got, np.float64) - want).max() / np.abs(want).max())


@pytest.fixture(scope="module", params=with_file("knockout_ref.npz", VISION))
def fx(request):
    fam = request.param
    d = DATA / fam
    with vision_engine(fam) as eng:
        yield (fam, eng, meta(fam)["prompt"], str(d / "image.png"), np.load(d / "ref.npz"),
               np.load(d / "knockout_ref.npz"), np.load(d / "ablation_ref.npz"))


def test_default_knockout_blocks_the_queries_after_the_image(fx):
    fam, eng, prompt, img, ref, ko, _ = fx
    n = len(ref["prompt_ids"])
    heads = [tuple(h) for h in ko["after_heads"].tolist()]
    with eng.ablated(heads, method="knockout"):
        attn = eng.attention(prompt, images=[img], positions=range(n))
        logits = eng.logits(prompt, images=[img], all_positions=True)
    vis = ref["visual_positions"]
    end = int(vis.max()) + 1
    for layer, h in heads:
        assert np.abs(attn[layer, h][end:][:, vis]).max() == 0.0
        assert attn[layer, h][:end][:, vis].sum() > 0  # image -> image kept
    assert np.abs(attn - ko["after_attn_all"]).max() <= ATOL
    assert close(logits, ko["after_logits_all"]) <= 1e-3


def test_question_span_is_the_references(fx):
    fam, eng, prompt, img, ref, ko, _ = fx
    from corehead.knockout import prompt_layout

    lay = prompt_layout(eng, prompt, [img], question="What is this?")
    np.testing.assert_array_equal(lay.question, ko["question_positions"])
    np.testing.assert_array_equal(lay.visual(), ref["visual_positions"])
    start = prompt.rfind("What is this?")
    np.testing.assert_array_equal(lay.char_positions(start, start + 13), ko["question_positions"])


def test_presets_in_layer_windows_match_transformers(fx):
    fam, eng, prompt, img, ref, ko, _ = fx
    names = ko["preset_names"].tolist()
    assert names == list(PRESETS)
    n_layer = eng.info["n_layer"]
    worst = 0.0
    for p, name in enumerate(names):
        for wi, w in enumerate(ko["windows"].tolist()):
            for layer, win in enumerate(layer_windows(n_layer, w)):
                with eng.knockout(name, layers=win, prompt=prompt, images=[img], question="What is this?"):
                    got = eng.logits(prompt, images=[img])
                want = ko["flow_logits_last"][p, wi, layer]
                worst = max(worst, close(got, want))
                if layer == 0 and w == 1:
                    assert np.abs(want - ko["base_logits_last"]).max() > 1e-2  # the knockout matters
    assert worst <= 1e-3, worst


def test_information_flow_is_the_relative_change_of_the_answer_probability(fx, tmp_path):
    fam, eng, prompt, img, ref, ko, abl = fx
    answer = eng.detokenize(abl["answer_ids"].tolist())
    probe = Probe(image=img, question="What is this?", answer=answer, prompt=prompt)
    tok = int(abl["answer_ids"][0])

    def prob(lg):
        lg = np.asarray(lg, np.float64)
        e = np.exp(lg - lg.max())
        return e[tok] / e.sum()

    p0 = prob(ko["base_logits_last"])
    for wi, w in enumerate(ko["windows"].tolist()):
        flow = eng.information_flow(probe, window=w)
        assert flow.token == tok
        assert abs(flow.prob - p0) <= 1e-3 * p0
        for p, name in enumerate(PRESETS):
            want = np.array([100 * (prob(lg) - p0) / p0 for lg in ko["flow_logits_last"][p, wi]])
            np.testing.assert_allclose(flow.change[name], want, atol=0.5 + 1e-2 * np.abs(want).max())
    assert "Image->Last" in flow.table()
    flow.plot(tmp_path / "flow.png")
    assert (tmp_path / "flow.png").stat().st_size > 1000


def test_generated_tokens_keep_the_knockout(fx):
    # The answer tokens after the prompt are queries after the image: appended one by one to the
    # cached prompt they must see what a prefill of prompt + answer sees.
    fam, eng, prompt, img, ref, ko, abl = fx
    ans = abl["answer_ids"].tolist()
    heads = [tuple(h) for h in ko["after_heads"].tolist()]
    n = len(ref["prompt_ids"])
    with eng.ablated(heads, method="knockout"):
        full = eng.logits(prompt + eng.detokenize(ans), images=[img], all_positions=True)[n - 1:n - 1 + len(ans)]
        first = eng.logits(prompt, images=[img])
        rest = eng.append(ans[:-1], all_positions=True)
    np.testing.assert_allclose(np.vstack([first[None], rest]), full, atol=1e-4 * np.abs(full).max())


def test_two_images_image_to_image_kept():
    """The default knockout with two images: text between them loses image 0, image 1's tokens
    still read image 0, the text after image 1 loses both; queries="all" blocks image 1 too."""
    fam = "llava"
    d = DATA / fam
    img = str(d / "image.png")
    with vision_engine(fam) as eng:
        prompt = "USER: <__media__> and <__media__>\nWhat is this? ASSISTANT:"
        vis = np.asarray(eng.visual_token_positions(prompt, [img, img]))
        n = len(eng.multimodal_tokens(prompt, [img, img]))
        im0, im1 = vis[:len(vis) // 2], vis[len(vis) // 2:]
        with eng.ablated([(1, 2)], method="knockout"):
            a = eng.attention(prompt, images=[img, img], positions=range(n), layers=[1])[0, 2]
        with eng.ablated([(1, 2)], method="knockout", queries="all"):
            b = eng.attention(prompt, images=[img, img], positions=range(n), layers=[1])[0, 2]
    between = np.arange(im0.max() + 1, im1.min())
    after = np.arange(im1.max() + 1, n)
    assert a[np.ix_(between, im0)].max() == 0.0
    assert a[np.ix_(im1, im0)].sum(-1).min() > 0.0
    assert a[np.ix_(after, vis)].max() == 0.0
    assert a[np.ix_(im1, im1)].sum() > 0.0
    assert b[:, vis].max() == 0.0


@pytest.fixture(scope="module")
def llama():
    ref = np.load(DATA / "llama" / "ref.npz")
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        yield eng, ref


def test_edges_by_positions_and_masks_on_text(llama):
    eng, ref = llama
    ids = ref["prompt_ids"].tolist()
    n = len(ids)
    with eng.knockout([([-1, -2], [1, 2, 3])], heads=[(1, 2)], prompt=ids):
        a = eng.attention(ids, positions=[-3, -2, -1])
    with eng.knockout([([n - 1, n - 2], [1, 2, 3])], heads=[(1, 2)]):  # absolute positions need no prompt
        np.testing.assert_array_equal(eng.attention(ids, positions=[-3, -2, -1]), a)
    assert np.abs(a[1, 2, 1:, [1, 2, 3]]).max() == 0.0
    np.testing.assert_allclose(a[1, 2, 1:].sum(-1), 1.0, atol=1e-5)
    want = ref["attn_all"][1, 2][n - 3]  # an unblocked query of the knocked head
    np.testing.assert_allclose(a[1, 2, 0], want, atol=1e-4)
    np.testing.assert_allclose(a[0], ref["attn_all"][0][:, n - 3:], atol=1e-4)  # layer 0 untouched
    mask = np.zeros((n, n), bool)
    mask[np.ix_([n - 2, n - 1], [1, 2, 3])] = True
    with eng.knockout(mask, heads=[(1, 2)]):  # the same edges as a boolean mask
        np.testing.assert_array_equal(eng.attention(ids, positions=[-3, -2, -1]), a)


def test_knockout_with_every_head_by_layers_equals_listing_them(llama):
    eng, ref = llama
    ids = ref["prompt_ids"].tolist()
    heads = [(1, h) for h in range(eng.info["n_head"])]
    with eng.knockout([("last", [1, 2])], layers=[1], prompt=ids):
        a = eng.logits(ids, all_positions=True)
    with eng.knockout([([-1], [1, 2])], heads=heads, prompt=ids):
        b = eng.logits(ids, all_positions=True)
    np.testing.assert_array_equal(a, b)  # one shared mask plane vs per-head masks: same numbers
    assert np.abs(a[-1] - ref["logits_all"][-1]).max() > 1e-3
    np.testing.assert_array_equal(a[:-1], eng.logits(ids, all_positions=True)[:-1])


def test_clearing_a_knockout_restores_bit_identical_outputs(llama):
    eng, ref = llama
    ids = ref["prompt_ids"].tolist()
    base = eng.logits(ids, all_positions=True)
    with eng.knockout([("last", [1])], prompt=ids):
        assert np.abs(eng.logits(ids, all_positions=True) - base).max() > 0
    np.testing.assert_array_equal(eng.logits(ids, all_positions=True), base)


def test_mask_to_ranges_runs():
    m = np.zeros((6, 6), bool)
    m[[1, 2, 4], 0] = True
    m[5, 3] = True
    assert mask_to_ranges(m) == ([0, 0, 3], [1, 4, 5], [3, 5, 6])


def test_bad_knockout_input(llama):
    eng, ref = llama
    ids = ref["prompt_ids"].tolist()
    with pytest.raises(ValueError, match="need prompt="):
        with eng.knockout([("last", "image")]):
            pass
    with pytest.raises(ValueError, match="pass prompt="):
        with eng.knockout([([-1], [1])]):
            pass
    with pytest.raises(ValueError, match="needs a prompt with images"):
        with eng.knockout([("last", "image")], prompt=ids):
            pass
    with pytest.raises(ValueError, match="question="):
        with eng.knockout("Question->Last", prompt="USER: hi ASSISTANT:"):
            pass
    with pytest.raises(ValueError, match="does not appear"):
        with eng.knockout("Question->Last", prompt="USER: hi ASSISTANT:", question="bye"):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with eng.knockout([([99], [1])], prompt=ids):
            pass
    with pytest.raises(ValueError, match="unknown preset"):
        with eng.knockout("Image->Nowhere", prompt=ids):
            pass
    with pytest.raises(ValueError, match="unknown span name"):
        with eng.knockout([("lastt", [1])], prompt=ids):
            pass
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        with eng.knockout([("last", [1])], layers=[7], prompt=ids):
            pass
    with pytest.raises(ValueError, match=r"\[n_tokens, n_tokens\]"):
        with eng.knockout(np.zeros((3, 3), bool), prompt=ids):
            pass
    with pytest.raises(ValueError, match="character span"):
        with eng.knockout([(Chars(5, 500), [1])], prompt="USER: hi ASSISTANT:"):
            pass
    with pytest.raises(ValueError, match="queries must be"):
        with eng.ablated([(0, 1)], method="knockout", queries="before"):
            pass
    with pytest.raises(ValueError, match="window must be"):
        layer_windows(4, 0)


def test_layer_windows_clip_at_the_ends():
    w = layer_windows(12, 9)
    assert (w[0].start, w[0].stop) == (0, 5) and (w[6].start, w[6].stop) == (2, 11)
    assert (w[11].start, w[11].stop) == (7, 12)
    assert all((x.start, x.stop) == (0, 2) for x in layer_windows(2, 9))
