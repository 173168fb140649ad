// Pixtral (Pixtral 12B; Mistral Small 3.x with its 2x2 patch merger): a ViT with RMSNorm (pre_ln
// and per block), 2-D RoPE, gated FFN and no position embeddings or final norm; Mistral 3 then
// applies an RMSNorm, merges 2x2 patches (torch unfold order) with one linear, and the LLaVA-style
// MLP projector (mm.1 -> GELU (erf) -> mm.2).
//
// As transformers (PixtralImageProcessor + PixtralProcessor), not llama.cpp's mtmd:
// - resize: the longest edge down to clip.vision.image_size (floor, never up), then each side up
//   to a multiple of patch * merge (bicubic); mtmd instead fits a token budget (8..1024 tokens,
//   sides rounded to the nearest multiple), which gives another grid for most images;
// - [IMG_BREAK] after every row of tokens and [IMG_END] last are prompt tokens embedded by the text
//   model, not visual positions (mtmd writes the mmproj's copy v.token_embd.img_break into the
//   image chunk): they get no boxes, and RAM / CoRe-sparse see them as text;
// - GELU is erf-exact where transformers says "gelu" (mtmd's FFN_GELU is the tanh approximation).
#include <cmath>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

constexpr float kRopeTheta = 10000.0f;  // PixtralVisionConfig's default; the converter writes none

class PixtralFamily final : public VisionFamily {
public:
    const char* projector() const override { return "pixtral"; }
    const char* image_token() const override { return "[IMG]"; }
    // Older conversions of Mistral3ForConditionalGeneration / Pixtral wrote the text as `llama`.
    std::vector<std::string> text_archs() const override { return {"mistral3", "llama"}; }
    std::vector<std::string> layout_tokens() const override { return {"[IMG]", "[IMG_BREAK]", "[IMG_END]"}; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.spatial_merge = f.find_int("clip.vision.spatial_merge_size").value_or(1);  // Pixtral 12B: no merger
        if (hp.spatial_merge <= 0 || hp.spatial_merge > 16) f.fail("clip.vision.spatial_merge_size is out of range");
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (Pixtral projector output)");
        hp.n_out = out->ne[1];
        if ((hp.n_embd / hp.n_head) % 4 != 0) f.fail("the vision head size must be a multiple of 4 (2-D RoPE)");
        if (hp.image_size % (hp.patch_size * hp.spatial_merge) != 0) {
            f.fail("clip.vision.image_size must be a multiple of patch_size * spatial_merge_size");
        }
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, m = hp.spatial_merge;
        const ggml_tensor* mm1 = f.find_tensor("mm.1.weight");
        const int64_t hidden = mm1 ? mm1->ne[1] : 0;
        std::vector<TensorSpec> s = {
            {"v.pre_ln.weight", {E}},
            {"mm.input_norm.weight", {E}, m > 1},
            {"mm.patch_merger.weight", {E * m * m, E}, m > 1},
            {"mm.1.weight", {E, hidden}},
            {"mm.1.bias", {hidden}, false},
            {"mm.2.weight", {hidden, hp.n_out}},
            {"mm.2.bias", {hp.n_out}, false},
            // The text model's [IMG_BREAK] row, copied by the converter for mtmd; corehead embeds the
            // token itself (so files converted without it still load).
            {"v.token_embd.img_break", {hp.n_out}, false},
        };
        add_patch_embedding_specs(s, hp, 0);
        add_vit_block_specs(s, hp, /*rms_norm=*/true, /*gated_ffn=*/true);
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t L = hp.image_size, unit = hp.patch_size * hp.spatial_merge;
        // transformers' get_resize_output_image_size: ratio from the longest edge, floored sides
        // (a side that floors to 0, where transformers fails, is kept at 1 pixel).
        double h = static_cast<double>(img.height), w = static_cast<double>(img.width);
        const double ratio = std::max(h / static_cast<double>(L), w / static_cast<double>(L));
        if (ratio > 1.0) {
            h = std::floor(h / ratio);
            w = std::floor(w / ratio);
        }
        auto up = [unit](double v) { return ((std::max<int64_t>(1, static_cast<int64_t>(v)) - 1) / unit + 1) * unit; };
        const int64_t rh = up(h), rw = up(w);
        const int64_t rows = rh / unit, cols = rw / unit;
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        p.views.push_back(make_view(resize(img, rw, rh, Resample::Bicubic), hp,
                                    {0.0, 0.0, static_cast<double>(img.width), static_cast<double>(img.height)}, cols,
                                    rows));
        // Per row: its tokens, then [IMG_BREAK]; the last row ends with [IMG_END] instead.
        for (int64_t r = 0; r < rows; ++r) {
            LayoutPiece row;
            row.view = 0;
            row.first = r * cols;
            row.count = cols;
            p.layout.push_back(row);
            p.layout.push_back({r + 1 < rows ? "[IMG_BREAK]" : "[IMG_END]", -1});
        }
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        const int64_t gw = g.grid_w, gh = g.grid_h, N = g.n_patches, E = hp.n_embd, m = hp.spatial_merge;
        const int64_t hd = E / hp.n_head;

        std::vector<int32_t> rows(static_cast<size_t>(N)), cols(static_cast<size_t>(N));
        for (int64_t i = 0; i < N; ++i) {
            rows[i] = static_cast<int32_t>(i / gw);
            cols[i] = static_cast<int32_t>(i % gw);
        }
        ggml_tensor* pos_h = g.input_i32(rows);
        ggml_tensor* pos_w = g.input_i32(cols);
        // transformers rotates pair (i, i + hd/2) by row * f[2i] for i < hd/4 and by column *
        // f[2i' + 1] (i' = i - hd/4) above, f[k] = theta^(-2k/hd). The converter permutes q/k rows
        // so that pair becomes (2i, 2i + 1): the first half of each head is a normal-mode RoPE over
        // hd/2 dims with the rows, the second half the same with the columns and every frequency
        // scaled by theta^(-2/hd) (the odd ones).
        const float odd = std::pow(kRopeTheta, -2.0f / static_cast<float>(hd));
        g.rope = [ctx, hd, pos_h, pos_w, odd](ggml_tensor* t) {
            const size_t half = static_cast<size_t>(hd / 2) * ggml_element_size(t);
            ggml_tensor* a = ggml_cont(ctx, ggml_view_3d(ctx, t, hd / 2, t->ne[1], t->ne[2], t->nb[1], t->nb[2], 0));
            ggml_tensor* b = ggml_cont(ctx, ggml_view_3d(ctx, t, hd / 2, t->ne[1], t->ne[2], t->nb[1], t->nb[2], half));
            a = ggml_rope_ext(ctx, a, pos_h, nullptr, static_cast<int>(hd / 2), 0, 0, kRopeTheta, 1.0f, 0.0f, 1.0f,
                              0.0f, 0.0f);
            b = ggml_rope_ext(ctx, b, pos_w, nullptr, static_cast<int>(hd / 2), 0, 0, kRopeTheta, odd, 0.0f, 1.0f,
                              0.0f, 0.0f);
            return ggml_concat(ctx, a, b, 0);
        };

        ggml_tensor* x = g.rms_norm(g.embed_patches(), g.w("v.pre_ln.weight"));
        const VisionAct a = hp.use_gelu ? VisionAct::GeluErf : VisionAct::Silu;
        for (int64_t il = 0; il < hp.n_layer; ++il) x = g.vit_block(il, x, /*rms=*/true, a, /*gated=*/true);
        g.rope = nullptr;

        if (ggml_tensor* norm = g.opt("mm.input_norm.weight")) x = g.rms_norm(x, norm);
        if (m > 1) {
            // torch unfold order: feature c*m*m + ki*m + kj of block (row, column) = patch
            // (row*m + ki, column*m + kj), channel c. pixel_shuffle gives (ki*m + kj)*E + c: swap.
            x = g.pixel_shuffle(x, gw, gh, m);
            x = ggml_reshape_3d(ctx, x, E, m * m, x->ne[1]);
            x = ggml_cont(ctx, ggml_permute(ctx, x, 1, 0, 2, 3));  // [m*m, E, tokens]
            x = ggml_reshape_2d(ctx, x, E * m * m, x->ne[2]);
            x = g.linear(x, g.w("mm.patch_merger.weight"));
        }
        x = g.act(g.linear(x, g.w("mm.1.weight"), g.opt("mm.1.bias")), VisionAct::GeluErf);
        return g.linear(x, g.w("mm.2.weight"), g.opt("mm.2.bias"));
    }
};

}  // namespace

const VisionFamily& pixtral_family() {
    static const PixtralFamily f;
    return f;
}

}  // namespace corehead
