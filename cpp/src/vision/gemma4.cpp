// Gemma 4 vision (projector `gemma4v`; transformers' Gemma4VisionModel + Gemma4MultimodalEmbedder,
// llama.cpp's tools/mtmd/models/gemma4v.cpp):
// - the image is resized keeping its aspect ratio to the largest size whose sides are multiples of
//   pooling * patch with at most max_soft_tokens * pooling^2 patches (bicubic), rescaled to [0, 1];
// - patches: a bias-free linear patch embedding of 2 * pixel - 1, plus learned x and y position tables;
// - RMS-normed ViT blocks: q/k norms with weights, V normed without, attention scale 1, 2-D RoPE
//   (theta 100: the first half of each head turns with the patch column, the second with its row,
//   NEOX pairs), norms after attention and after the GELU-gated MLP;
// - average pooling of pooling x pooling patches, times sqrt(n_embd), optional standardization
//   (std_bias / std_scale), an RMSNorm without weight and the projection into the text model.
// Linear layers may carry clamping bounds (Gemma4ClippableLinear: `<weight>.input_min` etc.).
#include <cfloat>
#include <cmath>
#include <string>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "runtime/weights.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

constexpr float kRopeTheta = 100.0f;      // Gemma4VisionConfig.default_theta (not in the GGUF)
constexpr int64_t kMaxSoftTokens = 280;   // Gemma4ImageProcessor.max_soft_tokens default
constexpr int64_t kDefaultPooling = 3;    // pooling_kernel_size; the converter writes no key for it

const char* const kLinears[] = {"attn_q", "attn_k", "attn_v", "attn_out", "ffn_gate", "ffn_up", "ffn_down"};
const char* const kClampSuffixes[] = {"input_min", "input_max", "output_min", "output_max"};

// transformers' get_aspect_ratio_preserving_size.
void target_size(int64_t height, int64_t width, int64_t patch, int64_t max_patches, int64_t pooling, int64_t& h_out,
                 int64_t& w_out) {
    const double factor = std::sqrt(static_cast<double>(max_patches * patch * patch) / static_cast<double>(height * width));
    const int64_t side = pooling * patch;
    int64_t th = static_cast<int64_t>(std::floor(factor * height / side)) * side;
    int64_t tw = static_cast<int64_t>(std::floor(factor * width / side)) * side;
    if (th == 0 && tw == 0) throw InputError("the image cannot be resized to a whole number of pooled patches");
    const int64_t max_side = (max_patches / (pooling * pooling)) * side;
    if (th == 0) {
        th = side;
        tw = std::min<int64_t>(width / height * side, max_side);
    } else if (tw == 0) {
        tw = side;
        th = std::min<int64_t>(height / width * side, max_side);
    }
    if (th * tw > max_patches * patch * patch || th <= 0 || tw <= 0) {
        throw InputError("the image's aspect ratio (" + std::to_string(width) + "x" + std::to_string(height) +
                         ") is too extreme for Gemma 4's patch budget");
    }
    h_out = th;
    w_out = tw;
}

class Gemma4VisionFamily final : public VisionFamily {
public:
    const char* projector() const override { return "gemma4v"; }
    const char* image_token() const override { return "<|image|>"; }
    std::vector<std::string> text_archs() const override { return {"gemma4"}; }
    std::vector<std::string> layout_tokens() const override { return {"<|image>", "<image|>", "<|image|>"}; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        const ggml_tensor* proj = f.find_tensor("mm.input_projection.weight");
        if (!proj) f.fail("missing tensor 'mm.input_projection.weight' (Gemma 4 projector)");
        hp.n_out = proj->ne[1];
        hp.scale_factor = f.find_int("clip.vision.projector.scale_factor").value_or(kDefaultPooling);
        if (hp.scale_factor <= 0 || hp.scale_factor > 16) f.fail("clip.vision.projector.scale_factor is out of range");
        const ggml_tensor* pos = f.find_tensor("v.position_embd.weight");
        if (!pos || pos->ne[2] != 2) f.fail("missing or malformed tensor 'v.position_embd.weight' ([n_embd, n, 2])");
        if ((hp.n_embd / hp.n_head) % 4 != 0) f.fail("the vision head size must be a multiple of 4 (2-D RoPE)");
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, F = hp.n_ff, P = hp.patch_size, hd = hp.n_embd / hp.n_head;
        const ggml_tensor* pos = f.find_tensor("v.position_embd.weight");
        std::vector<TensorSpec> s = {
            {"v.patch_embd.weight", {P, P, 3, E}},
            {"v.position_embd.weight", {E, pos ? pos->ne[1] : 0, 2}},
            {"mm.input_projection.weight", {E, hp.n_out}},
            {"v.std_bias", {E}, false},
            {"v.std_scale", {E}, false},
        };
        // The released mmproj files (E2B, E4B) also hold the audio encoder (a.*, mm.a.*): not
        // used here, accepted as they are.
        for (const std::string& name : f.tensor_names()) {
            if (name.rfind("a.", 0) == 0 || name.rfind("mm.a.", 0) == 0) s.push_back({name, {}, false});
        }
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            const std::string b = "v.blk." + std::to_string(il) + ".";
            for (const char* n : {"ln1", "ln2", "attn_post_norm", "ffn_post_norm"}) s.push_back({b + n + ".weight", {E}});
            s.push_back({b + "attn_q_norm.weight", {hd}});
            s.push_back({b + "attn_k_norm.weight", {hd}});
            for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_out"}) s.push_back({b + n + ".weight", {E, E}});
            s.push_back({b + "ffn_gate.weight", {E, F}});
            s.push_back({b + "ffn_up.weight", {E, F}});
            s.push_back({b + "ffn_down.weight", {F, E}});
            for (const char* n : kLinears) {
                for (const char* c : kClampSuffixes) s.push_back({b + n + "." + c, {1}, false});
            }
        }
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t P = hp.patch_size, k = hp.scale_factor;
        int64_t th = 0, tw = 0;
        target_size(img.height, img.width, P, kMaxSoftTokens * k * k, k, th, tw);
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        const ImageU8 resized = th == img.height && tw == img.width ? img : resize(img, tw, th, Resample::Bicubic);
        p.views.push_back(make_view(resized, hp, {0.0, 0.0, static_cast<double>(img.width), static_cast<double>(img.height)},
                                    tw / P / k, th / P / k));
        p.layout = {{"<|image>", -1}, {"", 0}, {"<image|>", -1}};
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        const int64_t E = hp.n_embd, N = g.n_patches, gw = g.grid_w, n_head = hp.n_head, hd = E / n_head;
        // Patches of 2 * pixel - 1 (transformers rescales to [0, 1], the model maps to [-1, 1]).
        ggml_tensor* img = ggml_scale_bias(ctx, g.pixels(), 2.0f, -1.0f);
        ggml_tensor* x = g.patch_embed(g.w("v.patch_embd.weight"), img);
        std::vector<int32_t> col(N), row(N);
        for (int64_t i = 0; i < N; ++i) {
            col[i] = static_cast<int32_t>(i % gw);
            row[i] = static_cast<int32_t>(i / gw);
        }
        ggml_tensor* pos_x = g.input_i32(col);
        ggml_tensor* pos_y = g.input_i32(row);
        ggml_tensor* table = g.f32(g.w("v.position_embd.weight"));
        const int64_t n_pos = table->ne[1];
        if (gw > n_pos || g.grid_h > n_pos) {
            throw InputError("the image needs " + std::to_string(std::max(gw, g.grid_h)) +
                             " patch positions per side; this mmproj has " + std::to_string(n_pos));
        }
        ggml_tensor* tx = ggml_view_2d(ctx, table, E, n_pos, table->nb[1], 0);
        ggml_tensor* ty = ggml_view_2d(ctx, table, E, n_pos, table->nb[1], table->nb[2]);
        x = ggml_add(ctx, x, ggml_add(ctx, ggml_get_rows(ctx, tx, pos_x), ggml_get_rows(ctx, ty, pos_y)));

        // 2-D RoPE: the first half of the head by column, the second by row, each half rotated in
        // place (ggml_rope_set_offset: no views copied out and concatenated back, per q and k per layer).
        auto rope_2d = [&](ggml_tensor* t) {  // [hd, n_head, N]
            const int half = static_cast<int>(hd / 2);
            t = ggml_rope_ext(ctx, t, pos_x, nullptr, half, GGML_ROPE_TYPE_NEOX, 0, kRopeTheta, 1.0f, 0.0f, 1.0f, 0.0f,
                              0.0f);
            t = ggml_rope_ext(ctx, t, pos_y, nullptr, half, GGML_ROPE_TYPE_NEOX, 0, kRopeTheta, 1.0f, 0.0f, 1.0f, 0.0f,
                              0.0f);
            return ggml_rope_set_offset(t, half);
        };
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            const std::string b = "v.blk." + std::to_string(il) + ".";
            auto lin = [&](ggml_tensor* t, const char* name) { return clipped_linear(g, t, b + name); };
            ggml_tensor* h = g.rms_norm(x, g.w(b + "ln1.weight"));
            ggml_tensor* q = ggml_reshape_3d(ctx, lin(h, "attn_q"), hd, n_head, N);
            ggml_tensor* k = ggml_reshape_3d(ctx, lin(h, "attn_k"), hd, n_head, N);
            ggml_tensor* v = ggml_reshape_3d(ctx, lin(h, "attn_v"), hd, n_head, N);
            q = rope_2d(g.rms_norm(q, g.w(b + "attn_q_norm.weight")));
            k = rope_2d(g.rms_norm(k, g.w(b + "attn_k_norm.weight")));
            v = ggml_rms_norm(ctx, v, hp.eps);
            // Full attention, scale 1, as flash attention: at the default 280-token budget a view has
            // 2520 patches, and [N, N, n_head] f32 scores (300 MB per layer) cost more memory traffic
            // than the block's GEMMs. K/V stay f32 with f32 accumulation (f32 parity with transformers).
            ggml_tensor* Q = ggml_permute(ctx, q, 0, 2, 1, 3);  // [hd, N, n_head]
            ggml_tensor* K = ggml_permute(ctx, k, 0, 2, 1, 3);
            ggml_tensor* V = ggml_permute(ctx, v, 0, 2, 1, 3);
            ggml_tensor* o = ggml_flash_attn_ext(ctx, Q, K, V, nullptr, 1.0f, 0.0f, 0.0f);  // [hd, n_head, N]
            ggml_prec_set_acc(o, GGML_PREC_F32);
            o = lin(ggml_reshape_2d(ctx, o, E, N), "attn_out");
            x = ggml_add(ctx, x, g.rms_norm(o, g.w(b + "attn_post_norm.weight")));
            h = g.rms_norm(x, g.w(b + "ln2.weight"));
            ggml_tensor* f = ggml_mul(ctx, g.act(lin(h, "ffn_gate"), VisionAct::GeluTanh), lin(h, "ffn_up"));
            x = ggml_add(ctx, x, g.rms_norm(lin(f, "ffn_down"), g.w(b + "ffn_post_norm.weight")));
        }
        // Average pooling of s x s patches: [E, gw*gh] -> [gw, gh, E] -> pool -> [E, n_tokens].
        const int s = static_cast<int>(hp.scale_factor);
        x = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_transpose(ctx, x)), gw, g.grid_h, E);
        x = ggml_pool_2d(ctx, x, GGML_OP_POOL_AVG, s, s, s, s, 0, 0);
        x = ggml_reshape_2d(ctx, x, x->ne[0] * x->ne[1], E);
        x = ggml_scale(ctx, ggml_cont(ctx, ggml_transpose(ctx, x)), std::sqrt(static_cast<float>(E)));
        if (ggml_tensor* bias = g.opt("v.std_bias")) x = ggml_sub(ctx, x, bias);
        if (ggml_tensor* scale = g.opt("v.std_scale")) x = ggml_mul(ctx, x, scale);
        x = ggml_rms_norm(ctx, x, hp.eps);
        return ggml_mul_mat(ctx, g.w("mm.input_projection.weight"), x);
    }

private:
    // Gemma4ClippableLinear: the input and output clamped to the bounds stored next to the weight.
    static ggml_tensor* clipped_linear(VisionGraph& g, ggml_tensor* x, const std::string& name) {
        auto bound = [&](const char* suffix, float fallback) {
            ggml_tensor* t = g.opt(name + "." + suffix);
            if (!t) return fallback;
            float v = fallback;
            ggml_backend_tensor_get(t, &v, 0, sizeof(float));
            return std::isnan(v) ? fallback : v;
        };
        const float in_lo = bound("input_min", -FLT_MAX), in_hi = bound("input_max", FLT_MAX);
        const float out_lo = bound("output_min", -FLT_MAX), out_hi = bound("output_max", FLT_MAX);
        if (in_lo > -FLT_MAX || in_hi < FLT_MAX) x = ggml_clamp(g.ctx, x, in_lo, in_hi);
        ggml_tensor* y = ggml_mul_mat(g.ctx, g.w(name + ".weight"), x);
        if (out_lo > -FLT_MAX || out_hi < FLT_MAX) y = ggml_clamp(g.ctx, y, out_lo, out_hi);
        return y;
    }
};

}  // namespace

const VisionFamily& gemma4_vision_family() {
    static const Gemma4VisionFamily f;
    return f;
}

}  // namespace corehead
