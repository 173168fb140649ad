"""InternVL 3 / 3.5 specifics, against transformers (tests/data/internvl*/ref.npz): the tile grid the
processor picks for many image sizes, the boxes of every tile and thumbnail token, the prompt
layout, the CLS order, and where llama.cpp's mtmd differs (corehead follows transformers).

The parity of pixels, prompt ids, embeddings, logits, attention, ablation and CoRe-sparse runs on
these fixtures in the shared tests (test_vision, test_multimodal_heads, test_sparse, ...)."""

from __future__ import annotations

from math import erf

import numpy as np
import pytest

from corehead import ContextOverflowError, Engine, ModelError
from tests.families import DATA, meta, vision_engine

FAMILIES = ["internvl35", "internvl3"]
TILE, PATCH = 64, 8
G = TILE // PATCH // 2  # tokens per tile side after the 2 x 2 pixel shuffle


def ref(family: str):
    return np.load(DATA / family / "ref.npz")


@pytest.fixture(scope="module", params=FAMILIES)
def fx(request):
    with vision_engine(request.param) as eng:
        yield request.param, eng


def expected_boxes(w: int, h: int, cols: int, rows: int) -> np.ndarray:
    """Token rectangles recomputed from a tile grid: the image squashed onto cols x rows tiles, each
    tile G x G tokens row-major, tiles row-major, then (with more than one tile) the thumbnail."""
    views = [(c * w / cols, r * h / rows, w / cols, h / rows) for r in range(rows) for c in range(cols)]
    if cols * rows > 1:
        views.append((0.0, 0.0, float(w), float(h)))
    out = []
    for x0, y0, vw, vh in views:
        for i in range(G):
            for j in range(G):
                out.append([x0 + j * vw / G, y0 + i * vh / G, x0 + (j + 1) * vw / G, y0 + (i + 1) * vh / G])
    return np.array(out)


def test_fixture_grids(fx):
    """internvl35: the 100x100 image ties 1 x 1 with 2 x 2 (same aspect ratio) and takes 2 x 2; internvl3:
    a portrait 1 x 2 grid. Tiles first, thumbnail last."""
    fam, eng = fx
    r = ref(fam)
    rows, cols = r["image_rows_cols"].tolist()
    assert (cols, rows) == {"internvl35": (2, 2), "internvl3": (1, 2)}[fam]
    views = eng.preprocess_image(DATA / fam / "image.png")
    assert len(views) == rows * cols + 1
    np.testing.assert_array_equal(np.stack(views)[-1], r["pixel_values"][-1])  # the thumbnail


def test_tile_grid_follows_the_processor_for_many_sizes(fx):
    """For 24 image sizes (smaller than a tile, ties, extreme aspect ratios), the number of views
    and every token's box equal what transformers' tile selection implies (ref: grid_cols_rows)."""
    fam, eng = fx
    r = ref(fam)
    rng = np.random.default_rng(3)
    for (w, h), (cols, rows), n_views in zip(r["grid_sizes_wh"], r["grid_cols_rows"], r["grid_n_views"]):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert len(eng.preprocess_image(img)) == n_views, (w, h)
        boxes = eng.visual_token_boxes(img)
        np.testing.assert_allclose(boxes, expected_boxes(int(w), int(h), int(cols), int(rows)), atol=1e-3,
                                   err_msg=f"{fam} {w}x{h}")


def test_fixture_image_boxes(fx):
    fam, eng = fx
    w, h = meta(fam)["image"]["size_wh"]
    rows, cols = ref(fam)["image_rows_cols"].tolist()
    np.testing.assert_allclose(eng.visual_token_boxes(DATA / fam / "image.png"), expected_boxes(w, h, cols, rows),
                               atol=1e-3)


def test_layout_is_img_tokens_end_img(fx):
    """<img>, every view's <IMG_CONTEXT> tokens with nothing between the views, </img> (the
    processor's layout; llama.cpp's mtmd uses the same one)."""
    fam, eng = fx
    m, r = meta(fam), ref(fam)
    ids = eng.multimodal_tokens(m["prompt"], [DATA / fam / "image.png"])
    vis = r["visual_positions"]
    assert (np.diff(vis) == 1).all()
    assert eng.detokenize([int(ids[vis[0] - 1])]) == "<img>"
    assert eng.detokenize([int(ids[vis[-1] + 1])]) == "</img>"
    assert (ids[vis] == m["image_token_id"]).all()


# -- llama.cpp's mtmd differs here; corehead follows transformers -----------------------------------

def llama_cpp_views(w: int, h: int, max_tiles: int) -> int:
    """The number of views llama.cpp's mtmd (pinned tree: mtmd_image_preprocessor_internvl) gives an
    image, re-derived from its rules: no tiling unless a side exceeds the tile; else the candidate grid
    with the largest effective resolution (then the least waste) as in LLaVA-1.6, plus an overview."""
    if w <= TILE and h <= TILE:
        return 1
    best, best_eff, best_waste = None, 0, float("inf")
    for a in range(1, max_tiles + 1):
        for b in range(1, max_tiles // a + 1):
            cw, ch = a * TILE, b * TILE
            s = min(cw / w, ch / h)
            eff = min(int(w * s) * int(h * s), w * h)
            waste = cw * ch - eff
            if eff > best_eff or (eff == best_eff and waste < best_waste):
                best, best_eff, best_waste = (a, b), eff, waste
    return best[0] * best[1] + 1


def test_tile_grid_is_transformers_not_llama_cpp(fx):
    fam, eng = fx
    r = ref(fam)
    max_tiles = 6 if fam == "internvl35" else 12
    differ = []
    for (w, h), n_views in zip(r["grid_sizes_wh"].tolist(), r["grid_n_views"].tolist()):
        ours = len(eng.preprocess_image(np.zeros((h, w, 3), np.uint8)))
        assert ours == n_views
        if llama_cpp_views(w, h, max_tiles) != ours:
            differ.append((w, h))
    # e.g. 60x40: transformers 3 x 2 tiles + thumbnail, llama.cpp one view (the image fits a tile)
    assert (60, 40) in differ and len(differ) >= 5, differ


def numpy_tower(family: str, pixels: np.ndarray, cls_first: bool) -> np.ndarray:
    """The InternViT + projector of the fixture's mmproj in numpy (weights from the GGUF), on the
    reference's pixel values, with CLS before (transformers) or after (llama.cpp's internvl graph)
    the patches; the position embeddings are always [CLS, patches]."""
    from gguf import GGUFReader

    t = {x.name: np.array(x.data, dtype=np.float64) for x in GGUFReader(str(DATA / family / "mmproj-f32.gguf")).tensors}
    E, nh = 32, 2
    hd = E // nh
    rms = "v.blk.0.ln1.bias" not in t
    gelu = np.vectorize(lambda v: 0.5 * v * (1 + erf(v / np.sqrt(2))))

    def norm(x, p, eps=1e-6, kind=None):
        if (kind or ("rms" if rms else "ln")) == "rms":
            return x / np.sqrt((x**2).mean(-1, keepdims=True) + eps) * t[p + ".weight"]
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * t[p + ".weight"] + t[p + ".bias"]

    def lin(x, p):
        y = x @ t[p + ".weight"].T
        return y + t[p + ".bias"] if p + ".bias" in t else y

    out = []
    for view in pixels.astype(np.float64):
        n = (TILE // PATCH) ** 2
        patches = view.reshape(3, 8, PATCH, 8, PATCH).transpose(1, 3, 0, 2, 4).reshape(n, -1)
        x = patches @ t["v.patch_embd.weight"].reshape(E, -1).T + t["v.patch_embd.bias"]
        cls = t["v.class_embd"].reshape(1, E)
        x = np.concatenate([cls, x] if cls_first else [x, cls]) + t["v.position_embd.weight"].reshape(n + 1, E)
        for i in range(4):
            b = f"v.blk.{i}."
            h = norm(x, b + "ln1")
            q, k, v = (lin(h, b + f"attn_{c}") for c in "qkv")
            if b + "attn_q_norm.weight" in t:
                q, k = norm(q, b + "attn_q_norm", kind="rms"), norm(k, b + "attn_k_norm", kind="rms")
            q, k, v = (a.reshape(n + 1, nh, hd).transpose(1, 0, 2) for a in (q, k, v))
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            p = np.exp(s - s.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            x = x + lin((p @ v).transpose(1, 0, 2).reshape(n + 1, E), b + "attn_out") * t[b + "ls1.weight"]
            x = x + lin(gelu(lin(norm(x, b + "ln2"), b + "ffn_up")), b + "ffn_down") * t[b + "ls2.weight"]
        x = x[1:] if cls_first else x[:n]
        # pixel shuffle: token (r2, c2) = the 2 x 2 patches of its block, features (row offset, column offset, e)
        x = x.reshape(G, 2, G, 2, E).transpose(0, 2, 1, 3, 4).reshape(G * G, 4 * E)
        x = norm(x, "mm.model.mlp.0", eps=1e-5, kind="ln")
        out.append(lin(gelu(lin(x, "mm.model.mlp.1")), "mm.model.mlp.3"))
    return np.concatenate(out)


@pytest.mark.parametrize("family", FAMILIES)
def test_cls_first_as_transformers_not_llama_cpp(family):
    """InternViT puts CLS at position 0. llama.cpp's internvl graph (pinned tree) appends it after the
    patches while its position embeddings assume it first (as its llava graph, issue #25814): an
    independent numpy tower is right with CLS first and clearly wrong in llama.cpp's order."""
    r = ref(family)
    want = r["image_embeds"]

    def rel(a):
        return float(np.abs(a - want).max() / np.abs(want).max())

    assert rel(numpy_tower(family, r["pixel_values"], cls_first=True)) <= 1e-4
    assert rel(numpy_tower(family, r["pixel_values"], cls_first=False)) > 1e-2
    with vision_engine(family) as e:
        assert rel(e.encode_image(DATA / family / "image.png")) <= 1e-4


# -- errors -------------------------------------------------------------------------------------

def test_a_tile_count_that_overflows_the_context_is_refused():
    """internvl3 tiles a 300x1 strip into 12 tiles + thumbnail (208 visual tokens): with n_ctx = 128
    the request is refused before anything is encoded; the fixture image (48 tokens) still fits."""
    d, m = DATA / "internvl3", meta("internvl3")
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_ctx=128, n_threads=2) as e:
        strip = np.zeros((1, 300, 3), np.uint8)
        assert len(e.visual_token_boxes(strip)) == 13 * G * G
        with pytest.raises(ContextOverflowError, match="needs .* tokens but the context holds 128"):
            e.logits(m["prompt"], images=[strip])
        with pytest.raises(ContextOverflowError):
            three = m["prompt"].replace("<__media__>", "<__media__>" * 3)  # 3 x 48 visual tokens
            e.generate(three, images=[d / "image.png"] * 3, max_tokens=2)
        assert np.isfinite(e.logits(m["prompt"], images=[d / "image.png"])).all()


@pytest.mark.parametrize("model,mmproj", [("llava", "internvl35"), ("qwen2vl", "internvl3"), ("qwen2", "internvl3"),
                                          ("internvl35", "qwen2vl"), ("internvl3", "idefics3")])
def test_an_mmproj_for_another_model_names_both_files(model, mmproj):
    """llama / qwen2vl text: not a family InternVL feeds; qwen2 without <img> in its vocabulary; an
    InternVL model with another family's projector."""
    m, p = DATA / model / "model-f32.gguf", DATA / mmproj / "mmproj-f32.gguf"
    with pytest.raises(ModelError, match="different model") as e:
        Engine(m, mmproj=p, n_threads=2)
    assert str(p) in str(e.value) and str(m) in str(e.value)


def with_u32(tmp_path, edits: dict[str, int]):
    """The internvl35 mmproj with uint32 metadata values replaced (patched in place)."""
    import struct

    data = bytearray((DATA / "internvl35" / "mmproj-f32.gguf").read_bytes())
    for key, value in edits.items():
        at = data.index(key.encode() + struct.pack("<I", 4)) + len(key)  # key bytes, then type 4 (uint32)
        data[at + 4 : at + 8] = struct.pack("<I", value)
    p = tmp_path / "mmproj.gguf"
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("edits,message", [
    ({"clip.vision.preproc_max_tiles": 65}, "preproc_max_tiles must satisfy"),
    ({"clip.vision.preproc_max_tiles": 0}, "preproc_max_tiles must satisfy"),
    ({"clip.vision.preproc_min_tiles": 0}, "preproc_min_tiles"),
    ({"clip.vision.preproc_min_tiles": 7}, "1 <= min <= max"),
    ({"clip.vision.projector.scale_factor": 3}, "scale_factor must divide"),
    # 64 tiles of 2048 px: a 268 M pixel canvas
    ({"clip.vision.image_size": 2048, "clip.vision.preproc_max_tiles": 64}, "too large"),
])
def test_bad_tiling_metadata_is_refused(tmp_path, edits, message):
    p = with_u32(tmp_path, edits)
    with pytest.raises(ModelError, match=message):
        Engine(DATA / "internvl35" / "model-f32.gguf", mmproj=p, n_threads=1)
