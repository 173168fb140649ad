"""Images against transformers: preprocessing (pixel values), prompt expansion, projector
output, logits and greedy answers of the committed tiny VLM fixtures (python -m tools.fixtures.make),
visual-token geometry, and bad image inputs. No torch: references are in tests/data/*/ref.npz."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from corehead import Engine, ModelError, _core
from corehead.images import load_image
from tests.families import DATA, VISION, meta
from tests.families import vision_engine as engine


def ref(family: str):
    return np.load(DATA / family / "ref.npz")


def rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module", params=VISION)
def family(request):
    return request.param


@pytest.fixture(scope="module")
def eng32(family):
    with engine(family) as e:
        yield e


def qwen_patch_rows(view: np.ndarray, patch: int = 14, merge: int = 2, temporal: int = 2) -> np.ndarray:
    """A [3, H, W] view in Qwen2-VL's flattened patch order: [n_patches, 3 * T * P * P], patches
    grouped by merge x merge blocks (row-major), the frame repeated T times."""
    _, h, w = view.shape
    gh, gw = h // patch, w // patch
    x = view.reshape(3, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # block row, block col, row in block, col in block, c, y, x
    x = np.repeat(x[:, :, :, :, :, None], temporal, axis=5)
    return x.reshape(-1, 3 * temporal * patch * patch)


# -- preprocessing -------------------------------------------------------------------------------

def test_pixel_values_match_the_hf_processor(family, eng32):
    r = ref(family)
    views = eng32.preprocess_image(DATA / family / "image.png")
    want = r["pixel_values"]
    if family.startswith("qwen"):
        got = qwen_patch_rows(views[0], patch=eng32.info["vision"]["patch_size"])
    else:
        got = np.stack(views) if want.ndim == 4 else views[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    if family == "idefics3" or family.startswith("internvl"):
        rows, cols = r["image_rows_cols"]
        assert len(views) == rows * cols + 1  # tiles + global view (idefics3) / thumbnail (internvl)


@pytest.mark.parametrize("filt", ["bilinear", "bicubic", "lanczos"])
def test_resampling_is_pillow_exact(filt):
    rng = np.random.default_rng(0)
    pil = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}[filt]
    for (h, w), (nh, nw) in [((37, 53), (64, 64)), ((100, 61), (28, 140)), ((5, 9), (5, 40)), ((48, 96), (48, 17)),
                             ((1, 1), (13, 7))]:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(a).resize((nw, nh), resample=pil))
        np.testing.assert_array_equal(_core.resize_image(a, nw, nh, filt), want)


# -- prompts -------------------------------------------------------------------------------------

def test_prompt_expansion_matches_the_hf_processor(family, eng32):
    r, m = ref(family), meta(family)
    img = DATA / family / "image.png"
    np.testing.assert_array_equal(eng32.multimodal_tokens(m["prompt"], [img]), r["prompt_ids"])
    np.testing.assert_array_equal(eng32.visual_token_positions(m["prompt"], [img]), r["visual_positions"])


def test_no_marker_puts_the_image_first(eng32, family):
    m = meta(family)
    img = DATA / family / "image.png"
    text = m["prompt"].replace("<__media__>", "")
    marked = eng32.multimodal_tokens("<__media__>" + text, [img])
    np.testing.assert_array_equal(eng32.multimodal_tokens(text, [img]), marked)


def test_custom_marker(eng32, family):
    m = meta(family)
    img = DATA / family / "image.png"
    want = eng32.multimodal_tokens(m["prompt"], [img])
    eng32.image_marker = "<img>"
    try:
        np.testing.assert_array_equal(eng32.multimodal_tokens(m["prompt"].replace("<__media__>", "<img>"), [img]), want)
    finally:
        del eng32.image_marker


# -- numerics ------------------------------------------------------------------------------------

def test_image_embeddings_match_transformers(family, eng32):
    r = ref(family)
    got = eng32.encode_image(DATA / family / "image.png")
    want = r["image_embeds"]
    if "deepstack_embeds" in r:  # Qwen3-VL: the DeepStack slices follow the main embedding, as in llama.cpp's mmproj
        want = np.concatenate([want, *r["deepstack_embeds"]], axis=1)
    assert got.shape == want.shape and got.dtype == np.float32
    assert rel(got, want) <= 1e-3, f"{family}: image embeddings off by {rel(got, want):.2e} x max"


def test_logits_match_transformers(family, eng32):
    r, m = ref(family), meta(family)
    img = DATA / family / "image.png"
    last = eng32.logits(m["prompt"], images=[img])
    assert rel(last, r["logits_last"]) <= 1e-3, f"{family}: last logits off by {rel(last, r['logits_last']):.2e}"
    every = eng32.logits(m["prompt"], images=[img], all_positions=True)
    assert every.shape == r["logits_all"].shape
    assert rel(every, r["logits_all"]) <= 3e-3
    np.testing.assert_array_equal(every.argmax(-1), r["logits_all"].argmax(-1))


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_greedy_answers_match_transformers(family, dtype):
    r, m = ref(family), meta(family)
    want = r["greedy_ids"].tolist()
    with engine(family, dtype) as e:
        got = e.generate_ids(m["prompt"], images=[DATA / family / "image.png"], max_tokens=len(want),
                             stop_at_eog=False)
    assert got == want, f"{family}/{dtype}"


def test_small_prefill_batches_give_the_same_logits(family):
    r, m = ref(family), meta(family)
    img = DATA / family / "image.png"
    with engine(family, n_batch=5) as e:
        got = e.logits(m["prompt"], images=[img])
    assert rel(got, r["logits_last"]) <= 1e-3


def test_generate_and_chat_take_images(eng32, family):
    m = meta(family)
    img = Image.open(DATA / family / "image.png")
    text = eng32.generate(m["prompt"], images=[img], max_tokens=4)
    assert isinstance(text, str)
    assert "".join(eng32.generate(m["prompt"], images=[img], max_tokens=4, stream=True)) == text


def test_llava_matches_transformers_not_llama_cpp_cls_order():
    """LLaVA's CLIP tower puts the CLS token at position 0 (transformers). llama.cpp's llava graph
    in the pinned snapshot appends CLS after the patches while the position embeddings assume it
    first (llama.cpp issue #25814). corehead matches transformers; a numpy tower with the CLS-last
    order is clearly off, so the fixture tells the two apart."""
    from gguf import GGUFReader

    r = ref("llava")
    t = {x.name: np.array(x.data, dtype=np.float64) for x in GGUFReader(str(DATA / "llava/mmproj-f32.gguf")).tensors}
    with engine("llava") as e:
        pixels = e.preprocess_image(DATA / "llava/image.png")[0].astype(np.float64)  # [3, 64, 64]
        ours = e.encode_image(DATA / "llava/image.png")
    n_layer = 2

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5) * t[p + ".weight"] + t[p + ".bias"]

    def tower(cls_first: bool) -> np.ndarray:
        P = 8
        patches = pixels.reshape(3, 8, P, 8, P).transpose(1, 3, 0, 2, 4).reshape(64, -1)
        x = patches @ t["v.patch_embd.weight"].reshape(32, -1).T
        cls = t["v.class_embd"][None]
        x = np.concatenate([cls, x] if cls_first else [x, cls]) + t["v.position_embd.weight"]
        x = ln(x, "v.pre_ln")
        for i in range(n_layer):
            b = f"v.blk.{i}."
            h = ln(x, b + "ln1")
            q, k, v = (h @ t[b + f"attn_{c}.weight"].T + t[b + f"attn_{c}.bias"] for c in "qkv")
            q, k, v = (a.reshape(65, 2, 16).transpose(1, 0, 2) for a in (q, k, v))
            s = q @ k.transpose(0, 2, 1) / 4.0
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            o = (p @ v).transpose(1, 0, 2).reshape(65, 32)
            x = x + o @ t[b + "attn_out.weight"].T + t[b + "attn_out.bias"]
            h = ln(x, b + "ln2")
            u = h @ t[b + "ffn_down.weight"].T + t[b + "ffn_down.bias"]  # legacy names: ffn_down = fc1
            u = u / (1 + np.exp(-1.702 * u))
            x = x + u @ t[b + "ffn_up.weight"].T + t[b + "ffn_up.bias"]
        x = x[1:] if cls_first else x[:64]
        from math import erf

        h = x @ t["mm.0.weight"].T + t["mm.0.bias"]
        h = 0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))
        return h @ t["mm.2.weight"].T + t["mm.2.bias"]

    want = r["image_embeds"]
    assert rel(tower(True), want) <= 1e-3  # the numpy tower is right with CLS first...
    assert rel(tower(False), want) > 1e-2  # ...and clearly wrong in llama.cpp's order
    assert rel(ours, want) <= 1e-3


# -- geometry ------------------------------------------------------------------------------------

def n_views(eng: Engine, img) -> int:
    return len(eng.preprocess_image(img))


def check_tiling(boxes: np.ndarray, n_view: int, width: int, height: int) -> None:
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width + 1e-3).all() and (boxes[:, 3] <= height + 1e-3).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    for v in np.split(boxes.astype(np.float64), n_view):
        # A tiling: no two boxes overlap and together they fill their bounding rectangle.
        x0, y0, x1, y1 = v[:, 0].min(), v[:, 1].min(), v[:, 2].max(), v[:, 3].max()
        area = ((v[:, 2] - v[:, 0]) * (v[:, 3] - v[:, 1])).sum()
        assert area == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-5)
        ix = np.minimum(v[:, None, 2], v[None, :, 2]) - np.maximum(v[:, None, 0], v[None, :, 0])
        iy = np.minimum(v[:, None, 3], v[None, :, 3]) - np.maximum(v[:, None, 1], v[None, :, 1])
        inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
        np.fill_diagonal(inter, 0)
        assert inter.max() <= 1e-6 * (x1 - x0) * (y1 - y0)


def test_boxes_tile_the_fixture_image(family, eng32):
    img = DATA / family / "image.png"
    w, h = meta(family)["image"]["size_wh"]
    boxes = eng32.visual_token_boxes(img)
    assert len(boxes) == len(ref(family)["visual_positions"])
    check_tiling(boxes, n_views(eng32, img), w, h)


@pytest.mark.parametrize("size", [(150, 90), (70, 200)])
def test_boxes_on_non_square_images(family, eng32, size):
    w, h = size
    img = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    boxes = eng32.visual_token_boxes(img)
    assert len(boxes) == len(eng32.visual_token_positions("x <__media__>", [img]))
    check_tiling(boxes, n_views(eng32, img), w, h)
    if family == "llava":  # shortest edge + center crop: a centered square of the short side
        s = min(w, h)
        assert boxes[:, [0, 1]].min(0) == pytest.approx([(w - s) / 2, (h - s) / 2], abs=1.0)
        assert boxes[:, [2, 3]].max(0) == pytest.approx([(w + s) / 2, (h + s) / 2], abs=1.0)
    else:  # the whole image (the last view of idefics3 is the global one)
        assert boxes[:, [0, 1]].min(0) == pytest.approx([0, 0])
        assert boxes[:, [2, 3]].max(0) == pytest.approx([w, h])


def test_qwen_grid_follows_the_resized_image():
    with engine("qwen2vl") as e:
        boxes = e.visual_token_boxes(DATA / "qwen2vl/image.png")
    t, gh, gw = ref("qwen2vl")["image_grid_thw"]
    assert len(boxes) == (gh // 2) * (gw // 2)
    assert boxes[1, 0] == pytest.approx(boxes[0, 2])  # row-major


def test_pixtral_rows_end_with_img_break_and_the_image_with_img_end():
    """Pixtral's layout (PixtralProcessor): per row of merged tokens `cols` x [IMG] then [IMG_BREAK],
    the last [IMG_BREAK] replaced by [IMG_END]. The break / end tokens are prompt tokens, not visual
    positions: they have no boxes, and the boxes of the visual tokens, row by row, are the cells of
    the resized image (sides multiples of patch * merge) scaled back to the original."""
    r, m = ref("mistral3"), meta("mistral3")
    img = DATA / "mistral3/image.png"
    rows, cols = (int(x) for x in r["image_rows_cols"])
    assert rows > 1 and cols > 1 and rows != cols
    with engine("mistral3") as e:
        ids = e.multimodal_tokens(m["prompt"], [img])
        vis = e.visual_token_positions(m["prompt"], [img])
        boxes = e.visual_token_boxes(img).astype(np.float64)
    s = int(vis[0])  # the first [IMG]
    assert vis.tolist() == [s + i * (cols + 1) + c for i in range(rows) for c in range(cols)]
    breaks = np.nonzero(ids == m["image_break_token_id"])[0].tolist()
    ends = np.nonzero(ids == m["image_end_token_id"])[0].tolist()
    assert breaks == [s + i * (cols + 1) + cols for i in range(rows - 1)]
    assert ends == [s + rows * (cols + 1) - 1]
    assert (ids[vis] == m["image_token_id"]).all() and not set(breaks + ends) & set(vis.tolist())
    np.testing.assert_array_equal(ids, r["prompt_ids"])
    # brute force from the processor's geometry: resized (w, h), cells of patch * merge pixels
    W, H = m["image"]["size_wh"]
    rw, rh = (int(x) for x in r["image_size"])
    unit = m["patch_size"] * m["spatial_merge_size"]
    assert r["pixel_values"].shape == (3, rh, rw) and (rw // unit, rh // unit) == (cols, rows)
    assert len(boxes) == rows * cols == len(r["image_embeds"])
    want = np.array([[c * unit * W / rw, i * unit * H / rh, (c + 1) * unit * W / rw, (i + 1) * unit * H / rh]
                     for i in range(rows) for c in range(cols)])
    np.testing.assert_allclose(boxes, want, rtol=0, atol=1e-4)


def test_pixtral_resize_follows_transformers_not_llama_cpp():
    """llama.cpp's mtmd sizes a Pixtral image by a token budget (calc_size_preserved_ratio: each side
    rounded to the nearest multiple of patch * merge, 8..1024 tokens), so the 96x64 fixture image
    stays 96x64 there (12 x 8 tokens); transformers' image processor brings the longest edge down to
    image_size (64) and rounds the sides up: 64x48, 8 x 6 tokens. corehead follows transformers."""
    r, m = ref("mistral3"), meta("mistral3")
    W, H = m["image"]["size_wh"]
    unit = m["patch_size"] * m["spatial_merge_size"]
    mtmd = (max(unit, round(W / unit) * unit), max(unit, round(H / unit) * unit))
    assert 8 <= (mtmd[0] // unit) * (mtmd[1] // unit) <= 1024  # inside mtmd's budget: no rescale
    with engine("mistral3") as e:
        (view,) = e.preprocess_image(DATA / "mistral3/image.png")
        n_vis = len(e.visual_token_boxes(DATA / "mistral3/image.png"))
    assert view.shape == r["pixel_values"].shape and (view.shape[2], view.shape[1]) != mtmd
    assert n_vis == len(r["visual_positions"]) != (mtmd[0] // unit) * (mtmd[1] // unit)


def test_pixtral_projector_gelu_is_erf_as_transformers_not_tanh_as_mtmd():
    """transformers' projector_hidden_act "gelu" is the erf form; llama.cpp's mtmd builds the Pixtral
    projector with FFN_GELU, the tanh approximation. ref.npz holds both embeddings: corehead's are
    the erf ones, far closer than the gap between the two."""
    r = ref("mistral3")
    with engine("mistral3") as e:
        got = e.encode_image(DATA / "mistral3/image.png")
    ours, mtmd = rel(got, r["image_embeds"]), rel(r["image_embeds_gelu_tanh"], r["image_embeds"])
    assert ours <= 1e-5 and mtmd >= 20 * ours, (ours, mtmd)


def test_pixtral_with_an_older_llama_arch_text_model():
    """Older conversions wrote Mistral 3's text as arch `llama` (model-llama-f16.gguf: the same
    checkpoint converted so); with the pixtral mmproj it loads and computes exactly what the
    mistral3 file does, and answers as transformers."""
    r, m = ref("mistral3"), meta("mistral3")
    d, img = DATA / "mistral3", DATA / "mistral3/image.png"
    with Engine(d / "model-llama-f16.gguf", mmproj=d / "mmproj-f16.gguf", n_threads=2) as old, \
            engine("mistral3", "f16") as new:
        assert (old.info["arch"], new.info["arch"]) == ("llama", "mistral3")
        np.testing.assert_array_equal(old.logits(m["prompt"], images=[img], all_positions=True),
                                      new.logits(m["prompt"], images=[img], all_positions=True))
        got = old.generate_ids(m["prompt"], images=[img], max_tokens=len(r["greedy_ids"]), stop_at_eog=False)
    assert got == r["greedy_ids"].tolist()


def test_pixtral_mmproj_keeps_the_img_break_row():
    """The [IMG_BREAK] embedding the converter copies into the mmproj (for mtmd, which puts it into
    the image chunk) equals the text model's row, so embedding the token as transformers does is the
    same vector in f32 (the fixture's converter driver is what keeps that row: FIXTURES)."""
    from gguf import GGUFReader

    m = meta("mistral3")
    vt = {t.name: np.asarray(t.data) for t in GGUFReader(str(DATA / "mistral3/mmproj-f32.gguf")).tensors}
    tt = {t.name: np.asarray(t.data) for t in GGUFReader(str(DATA / "mistral3/model-f32.gguf")).tensors}
    np.testing.assert_array_equal(vt["v.token_embd.img_break"], tt["token_embd.weight"][m["image_break_token_id"]])


# -- bad inputs ----------------------------------------------------------------------------------

def test_bad_image_files(tmp_path, eng32):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ValueError, match="cannot decode"):
        eng32.logits("x", images=[bad])
    data = (DATA / "qwen25vl/image.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot decode"):
        eng32.logits("x", images=[cut])
    with pytest.raises(FileNotFoundError):
        eng32.logits("x", images=[tmp_path / "missing.png"])


def test_empty_huge_and_odd_images(eng32, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        eng32.logits("x", images=[np.zeros((0, 5, 3), np.uint8)])
    with pytest.raises(ValueError, match="too large"):
        eng32.logits("x", images=[np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (8000, 8000, 3))])
    big = tmp_path / "big.png"
    Image.new("1", (10000, 6000)).save(big)
    with pytest.raises(ValueError, match="too large"):
        eng32.encode_image(big)
    with pytest.raises(TypeError):
        eng32.logits("x", images=[np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(ValueError):
        eng32.logits("x", images=[np.zeros((4, 4, 2), np.uint8)])
    # A 1-pixel image and a long thin one still run.
    for a in (np.full((1, 1, 3), 200, np.uint8), np.zeros((2, 150, 3), np.uint8)):
        out = eng32.logits("x <__media__>", images=[a])
        assert np.isfinite(out).all()


def test_qwen_refuses_extreme_aspect_ratios():
    with engine("qwen2vl") as e, pytest.raises(ValueError, match="aspect ratio"):
        e.logits("x", images=[np.zeros((1, 300, 3), np.uint8)])


def test_grey_rgba_and_16_bit_images_become_rgb(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(load_image(Image.fromarray(grey, "L")), np.repeat(grey[:, :, None], 3, 2))
    np.testing.assert_array_equal(load_image(grey), np.repeat(grey[:, :, None], 3, 2))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent (-> white)
    out = load_image(rgba)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[3, 0], [255, 255, 255])
    np.testing.assert_array_equal(load_image(Image.fromarray(rgba, "RGBA")), out)
    deep = (np.arange(16, dtype=np.uint16) * 4000).reshape(4, 4)
    p = tmp_path / "deep.png"
    Image.fromarray(deep).save(p)
    np.testing.assert_array_equal(load_image(p)[..., 0], (deep >> 8).astype(np.uint8))
    np.testing.assert_array_equal(load_image(deep)[..., 1], (deep >> 8).astype(np.uint8))
    pal = Image.fromarray(np.zeros((3, 3, 3), np.uint8)).convert("P")
    assert load_image(pal).shape == (3, 3, 3)


def test_marker_and_image_counts_must_agree(eng32, family):
    img = DATA / family / "image.png"
    with pytest.raises(ValueError, match="2 image marker"):
        eng32.logits("a <__media__> b <__media__>", images=[img])
    with pytest.raises(ValueError, match="1 image marker"):
        eng32.logits("a <__media__> b", images=[img, img])
    with pytest.raises(TypeError, match="prompt must be text"):
        eng32.logits([1, 2, 3], images=[img])


def test_images_to_a_text_only_engine():
    with Engine(DATA / "llama/model-f32.gguf", n_threads=2) as e:
        with pytest.raises(ValueError, match="no vision projector"):
            e.logits("hello", images=[DATA / "llava/image.png"])
        with pytest.raises(ValueError, match="no vision projector"):
            e.visual_token_boxes(DATA / "llava/image.png")


@pytest.mark.parametrize("model,mmproj", [("llava", "qwen2vl"), ("qwen2vl", "llava"), ("llava", "gemma3vl"),
                                          ("gemma3vl", "idefics3"), ("qwen25vl", "gemma3vl"),
                                          ("mistral3", "qwen2vl"), ("qwen2vl", "mistral3"), ("mistral3", "gemma3vl"),
                                          ("gemma3vl", "mistral3"), ("llava", "mistral3"), ("mistral3", "idefics3"),
                                          ("llava", "internvl35"), ("qwen2vl", "internvl3"), ("internvl35", "qwen2vl"),
                                          ("internvl3", "gemma3vl"), ("gemma3vl", "internvl35"),
                                          ("internvl35", "mistral3"), ("mistral3", "internvl3")])
def test_an_mmproj_for_another_model_is_refused(model, mmproj):
    m, p = DATA / model / "model-f32.gguf", DATA / mmproj / "mmproj-f32.gguf"
    with pytest.raises(ModelError, match="different model") as e:
        Engine(m, mmproj=p, n_threads=2)
    assert str(m) in str(e.value) and str(p) in str(e.value)  # names both files


def test_two_images_in_one_prompt(family):
    m = meta(family)
    img = DATA / family / "image.png"
    with engine(family) as e:
        one = len(e.visual_token_positions(m["prompt"], [img]))
        prompt = m["prompt"].replace("<__media__>", "<__media__> and <__media__>")
        pos = e.visual_token_positions(prompt, [img, np.asarray(Image.open(img).convert("RGB"))[::-1].copy()])
        assert len(pos) == 2 * one
        assert np.isfinite(e.logits(prompt, images=[img, img])).all()


def test_cli_run_with_an_image(capsys):
    from corehead.cli import main

    d, m = DATA / "qwen2vl", meta("qwen2vl")
    with engine("qwen2vl") as e:
        want = e.generate(m["prompt"], images=[d / "image.png"], max_tokens=8)
    rc = main(["run", "-m", str(d / "model-f32.gguf"), "--mmproj", str(d / "mmproj-f32.gguf"), "--image",
               str(d / "image.png"), "-p", m["prompt"], "-n", "8", "-t", "2"])
    assert rc == 0
    assert capsys.readouterr().out == want + "\n"
    rc = main(["run", "-m", str(DATA / "llama/model-f32.gguf"), "--image", str(d / "image.png"), "-p", "hi"])
    assert rc == 1
    assert "no vision projector" in capsys.readouterr().err
