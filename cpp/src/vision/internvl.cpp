// InternVL 2.5 / 3 / 3.5: InternViT (CLS first, learned positions, layer scale; the 6B variant with
// RMSNorm and a full-width RMS QK-norm) + pixel shuffle (scale_factor^2 patches per token) + a
// LayerNorm + 2-layer GELU MLP projector. Qwen2 (InternVL 3) or Qwen3 (InternVL 3.5) text.
//
// Preprocessing and layout as transformers' InternVLProcessor with GotOcr2ImageProcessor
// (crop_to_patches): among the grids of min..max tiles, the one whose aspect ratio is closest to
// the image's (ties: the larger grid while the image's area exceeds half of it), the image
// squashed to the grid (bicubic) and cut into tiles row-major, then, with more than one tile, the
// whole image squashed to one tile as the thumbnail (last); the prompt gets
// <img> + the tokens of every view + </img>.
//
// llama.cpp's mtmd differs (and transformers is followed): it picks the grid with llava-1.6's
// best-resolution rule, tiles only images larger than one tile, and its graph appends CLS after
// the patches while the position embeddings assume it first (tests/test_vision.py).
#include <algorithm>
#include <cmath>
#include <limits>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

constexpr int64_t kMaxTiles = 64;  // bounds the grid search (real files: 12)
// Bounds the canvas the image is resized to (max_tiles tiles): 64 tiles of 1024 px; real files
// need 12 x 448^2, 2.4 M pixels.
constexpr int64_t kMaxCanvasPixels = int64_t(1) << 26;

// transformers' get_optimal_tiled_canvas: (columns, rows).
std::pair<int64_t, int64_t> tile_grid(int64_t width, int64_t height, int64_t tile, int64_t min_tiles, int64_t max_tiles) {
    std::vector<std::pair<int64_t, int64_t>> grids;  // (columns, rows), width-major as transformers lists them
    for (int64_t c = 1; c <= max_tiles; ++c) {
        for (int64_t r = 1; r <= max_tiles; ++r) {
            if (c * r <= max_tiles && c * r >= min_tiles) grids.emplace_back(c, r);
        }
    }
    std::stable_sort(grids.begin(), grids.end(),
                     [](const auto& a, const auto& b) { return a.first * a.second < b.first * b.second; });
    const double aspect = static_cast<double>(width) / static_cast<double>(height);
    const double area = static_cast<double>(width) * static_cast<double>(height);
    double best_diff = std::numeric_limits<double>::infinity();
    std::pair<int64_t, int64_t> best{1, 1};
    for (const auto& g : grids) {
        const double diff = std::fabs(aspect - static_cast<double>(g.first) / static_cast<double>(g.second));
        if (diff < best_diff) {
            best_diff = diff;
            best = g;
        } else if (diff == best_diff &&
                   area > 0.5 * static_cast<double>(tile) * static_cast<double>(tile) * static_cast<double>(g.first * g.second)) {
            best = g;  // same aspect ratio: more tiles while they cover at most twice the image
        }
    }
    return best;
}

class InternVLFamily final : public VisionFamily {
public:
    const char* projector() const override { return "internvl"; }
    const char* image_token() const override { return "<IMG_CONTEXT>"; }
    // The text families corehead runs that InternVL 3 / 3.5 checkpoints use.
    std::vector<std::string> text_archs() const override { return {"qwen2", "qwen3"}; }
    std::vector<std::string> layout_tokens() const override { return {"<img>", "</img>", "<IMG_CONTEXT>"}; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.scale_factor = f.find_int("clip.vision.projector.scale_factor").value_or(2);
        if (hp.scale_factor <= 0 || hp.patches_per_side() % hp.scale_factor != 0) {
            f.fail("clip.vision.projector.scale_factor must divide the patches per side (" +
                   std::to_string(hp.patches_per_side()) + ")");
        }
        // Files from older converters carry no tile bounds: transformers' and llama.cpp's 1..12.
        hp.min_tiles = f.find_int("clip.vision.preproc_min_tiles").value_or(1);
        hp.max_tiles = f.find_int("clip.vision.preproc_max_tiles").value_or(12);
        if (hp.min_tiles < 1 || hp.max_tiles < hp.min_tiles || hp.max_tiles > kMaxTiles) {
            f.fail("clip.vision.preproc_min_tiles / preproc_max_tiles must satisfy 1 <= min <= max <= " +
                   std::to_string(kMaxTiles) + " (got " + std::to_string(hp.min_tiles) + ", " +
                   std::to_string(hp.max_tiles) + ")");
        }
        if (hp.max_tiles * hp.image_size * hp.image_size > kMaxCanvasPixels) {
            f.fail("clip.vision.preproc_max_tiles x clip.vision.image_size^2 is too large (" +
                   std::to_string(hp.max_tiles) + " tiles of " + std::to_string(hp.image_size) + " px)");
        }
        const ggml_tensor* out = f.find_tensor("mm.model.mlp.3.weight");
        if (!out) f.fail("missing tensor 'mm.model.mlp.3.weight' (InternVL projector output)");
        hp.n_out = out->ne[1];
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, in = E * hp.scale_factor * hp.scale_factor;
        std::vector<TensorSpec> s = {
            {"v.class_embd", {E}},
            {"mm.model.mlp.0.weight", {in}},  // the projector's LayerNorm
            {"mm.model.mlp.0.bias", {in}},
            {"mm.model.mlp.1.weight", {in, hp.n_out}},
            {"mm.model.mlp.1.bias", {hp.n_out}},
            {"mm.model.mlp.3.weight", {hp.n_out, hp.n_out}},
            {"mm.model.mlp.3.bias", {hp.n_out}},
        };
        add_patch_embedding_specs(s, hp, hp.patches_per_side() * hp.patches_per_side() + 1);
        add_vit_block_specs(s, hp, rms_vit(f), /*gated_ffn=*/false);
        for (int64_t i = 0; i < hp.n_layer; ++i) {
            const std::string b = "v.blk." + std::to_string(i) + ".";
            s.push_back({b + "ls1.weight", {E}});
            s.push_back({b + "ls2.weight", {E}});
            s.push_back({b + "attn_q_norm.weight", {E}, false});
            s.push_back({b + "attn_k_norm.weight", {E}, false});
        }
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t T = hp.image_size;
        const int64_t g = hp.patches_per_side() / hp.scale_factor;
        const auto [cols, rows] =
            hp.max_tiles > 1 ? tile_grid(img.width, img.height, T, hp.min_tiles, hp.max_tiles) : std::make_pair(int64_t{1}, int64_t{1});
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        const double W = static_cast<double>(img.width), H = static_cast<double>(img.height);
        p.layout.push_back({"<img>", -1});
        if (cols * rows == 1) {
            p.views.push_back(make_view(resize(img, T, T, Resample::Bicubic), hp, {0.0, 0.0, W, H}, g, g));
        } else {
            const ImageU8 canvas = resize(img, cols * T, rows * T, Resample::Bicubic);
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) {
                    const std::array<double, 4> box{c * W / cols, r * H / rows, (c + 1) * W / cols, (r + 1) * H / rows};
                    p.views.push_back(make_view(crop(canvas, c * T, r * T, T, T), hp, box, g, g));
                }
            }
            p.views.push_back(make_view(resize(img, T, T, Resample::Bicubic), hp, {0.0, 0.0, W, H}, g, g));
        }
        for (size_t v = 0; v < p.views.size(); ++v) p.layout.push_back({"", static_cast<int>(v)});
        p.layout.push_back({"</img>", -1});
        return p;
    }

    // transformers' InternVLVideoProcessor + InternVLProcessor.replace_video_token: every frame
    // resized to one tile (no tiling, no thumbnail), laid out as
    // "Frame1: <img>...</img>\nFrame2: <img>...</img>", with the image placeholder.
    PreparedImage prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>&, double,
                                const VisionHParams& hp) const override {
        PreparedImage p;
        add_frame_views(p, frames, hp.image_size, Resample::Bicubic, hp, hp.patches_per_side() / hp.scale_factor);
        for (size_t i = 0; i < frames.size(); ++i) {
            p.layout.push_back({std::string(i ? "\n" : "") + "Frame" + std::to_string(i + 1) + ": <img>", -1});
            p.layout.push_back({"", static_cast<int>(i)});
            p.layout.push_back({"</img>", -1});
        }
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        const bool rms = !g.opt("v.blk.0.ln1.bias");
        ggml_tensor* x = g.embed_patches();
        // CLS first, as transformers (its position embedding is row 0).
        x = ggml_concat(ctx, ggml_reshape_2d(ctx, g.f32(g.w("v.class_embd")), hp.n_embd, 1), x, 1);
        x = ggml_add(ctx, x, ggml_reshape_2d(ctx, g.f32(g.w("v.position_embd.weight")), hp.n_embd, g.n_patches + 1));
        const VisionAct a = hp.use_gelu ? VisionAct::GeluErf : VisionAct::Silu;
        for (int64_t il = 0; il < hp.n_layer; ++il) x = g.vit_block(il, x, rms, a, false);
        x = ggml_cont(ctx, ggml_view_2d(ctx, x, hp.n_embd, g.n_patches, x->nb[1], x->nb[1]));  // drop CLS
        x = g.pixel_shuffle(x, g.grid_w, g.grid_h, hp.scale_factor);
        // The projector's LayerNorm has PyTorch's default eps (1e-5), not the ViT's.
        x = ggml_add(ctx, ggml_mul(ctx, ggml_norm(ctx, x, 1e-5f), g.w("mm.model.mlp.0.weight")), g.w("mm.model.mlp.0.bias"));
        x = g.act(g.linear(x, g.w("mm.model.mlp.1.weight"), g.w("mm.model.mlp.1.bias")), VisionAct::GeluErf);
        return g.linear(x, g.w("mm.model.mlp.3.weight"), g.w("mm.model.mlp.3.bias"));
    }

private:
    // InternViT-6B's RMSNorm blocks have no norm biases (InternViT-300M's LayerNorm ones do);
    // llama.cpp guesses the 6B from its width and depth instead.
    static bool rms_vit(const GgufFile& f) { return f.find_tensor("v.blk.0.ln1.weight") && !f.find_tensor("v.blk.0.ln1.bias"); }
};

}  // namespace

const VisionFamily& internvl_family() {
    static const InternVLFamily f;
    return f;
}

}  // namespace corehead
