#include "vision/graph.h"

#include <cmath>
#include <cstring>

#include "ggml-backend.h"
#include "runtime/weights.h"

namespace corehead {

VisionGraph::VisionGraph(ggml_context* c, ggml_cgraph* g, const VisionHParams& h, const Weights& wt, const VisionView& v)
    : ctx(c), gf(g), hp(h), weights(wt), view(v), grid_w(v.width / h.patch_size), grid_h(v.height / h.patch_size),
      n_patches(grid_w * grid_h), exact(weights_are_f32(wt)) {}

bool VisionGraph::weights_are_f32(const Weights& wt) {
    // The first block's attention matrices decide: files are quantized as a whole, and the
    // parity fixtures are all-f32.
    const ggml_tensor* t = wt.find("v.blk.0.attn_q.weight");
    if (!t) t = wt.find("v.blk.0.attn_qkv.weight");
    return t && t->type == GGML_TYPE_F32;
}

ggml_tensor* VisionGraph::w(const std::string& name) const { return weights.get(name); }
ggml_tensor* VisionGraph::opt(const std::string& name) const { return weights.find(name); }

ggml_tensor* VisionGraph::f32(ggml_tensor* t) {
    return t && t->type != GGML_TYPE_F32 ? ggml_cast(ctx, t, GGML_TYPE_F32) : t;
}

ggml_tensor* VisionGraph::pixels() {
    return input_f32(view.pixels, view.width, view.height, 3);
}

ggml_tensor* VisionGraph::patch_embed(ggml_tensor* kernel, ggml_tensor* img) {
    const int P = static_cast<int>(hp.patch_size);
    if (!img) img = pixels();
    // im2col in f32: rows of 3*P*P pixel values, one per patch, in the kernel's element order.
    ggml_tensor* cols = ggml_im2col(ctx, kernel, img, P, P, 0, 0, 1, 1, true, GGML_TYPE_F32);
    cols = ggml_reshape_2d(ctx, cols, cols->ne[0], cols->ne[1] * cols->ne[2]);
    ggml_tensor* k = ggml_reshape_2d(ctx, kernel, kernel->ne[0] * kernel->ne[1] * kernel->ne[2], kernel->ne[3]);
    return ggml_mul_mat(ctx, k, cols);  // [E, n_patches]
}

ggml_tensor* VisionGraph::embed_patches() {
    ggml_tensor* x = patch_embed(w("v.patch_embd.weight"));
    if (ggml_tensor* b = opt("v.patch_embd.bias")) x = ggml_add(ctx, x, b);
    return x;
}

ggml_tensor* VisionGraph::temporal_patch_embed() {
    ggml_tensor* second = view.pixels_next.empty() ? pixels() : input_f32(view.pixels_next, view.width, view.height, 3);
    return ggml_add(ctx, embed_patches(), patch_embed(w("v.patch_embd.weight.1"), second));
}

ggml_tensor* VisionGraph::siglip_tower() {
    ggml_tensor* x = ggml_add(ctx, embed_patches(), f32(w("v.position_embd.weight")));
    for (int64_t il = 0; il < hp.n_layer; ++il) x = vit_block(il, x, false, VisionAct::GeluTanh, false);
    return layer_norm(x, w("v.post_ln.weight"), opt("v.post_ln.bias"));
}

ggml_tensor* VisionGraph::mlp_projector(ggml_tensor* x) {
    x = act(linear(x, w("mm.0.weight"), w("mm.0.bias")), VisionAct::GeluErf);
    return linear(x, w("mm.2.weight"), w("mm.2.bias"));
}

ggml_tensor* VisionGraph::linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias) {
    ggml_tensor* y = ggml_mul_mat(ctx, weight, x);
    return bias ? ggml_add(ctx, y, bias) : y;
}

ggml_tensor* VisionGraph::layer_norm(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias) {
    x = ggml_norm(ctx, x, hp.eps);
    x = ggml_mul(ctx, x, weight);
    return bias ? ggml_add(ctx, x, bias) : x;
}

ggml_tensor* VisionGraph::rms_norm(ggml_tensor* x, ggml_tensor* weight) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.eps), weight);
}

ggml_tensor* VisionGraph::act(ggml_tensor* x, VisionAct a) {
    switch (a) {
        case VisionAct::GeluErf:
            return ggml_gelu_erf(ctx, x);
        case VisionAct::GeluTanh: {
            // ggml's CPU GELU is a table lookup at f16 precision: fine when the weights are f16 or
            // quantized anyway, not for an f32 mmproj, which gets the exact formula:
            if (!exact) return ggml_gelu(ctx, x);
            // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))
            ggml_tensor* x3 = ggml_mul(ctx, ggml_sqr(ctx, x), x);
            ggml_tensor* u = ggml_add(ctx, x, ggml_scale(ctx, x3, 0.044715f));
            return ggml_mul(ctx, x, ggml_sigmoid(ctx, ggml_scale(ctx, u, 2.0f * 0.7978845608028654f)));
        }
        case VisionAct::QuickGelu:
            if (!exact) return ggml_gelu_quick(ctx, x);  // table lookup too, see GeluTanh
            return ggml_mul(ctx, x, ggml_sigmoid(ctx, ggml_scale(ctx, x, 1.702f)));
        case VisionAct::Silu:
            return ggml_silu(ctx, x);
    }
    return x;
}

ggml_tensor* VisionGraph::attention(int64_t il, ggml_tensor* x, ggml_tensor* rope_pos, ggml_tensor* mask) {
    const std::string b = "v.blk." + std::to_string(il) + ".";
    const int64_t n_head = hp.n_head, hd = hp.n_embd / hp.n_head, N = x->ne[1];
    ggml_tensor *q = nullptr, *k = nullptr, *v = nullptr;
    if (ggml_tensor* qkv_w = opt(b + "attn_qkv.weight")) {
        // One projection [3E, N]: q, k and v are its three row blocks, viewed per head.
        ggml_tensor* qkv = linear(x, qkv_w, opt(b + "attn_qkv.bias"));
        const size_t es = ggml_element_size(qkv);
        auto part = [&](int64_t i) {
            return ggml_view_3d(ctx, qkv, hd, n_head, N, hd * es, qkv->nb[1], static_cast<size_t>(i * hp.n_embd) * es);
        };
        q = part(0);
        k = part(1);
        v = part(2);
    } else {
        q = linear(x, w(b + "attn_q.weight"), opt(b + "attn_q.bias"));
        k = linear(x, w(b + "attn_k.weight"), opt(b + "attn_k.bias"));
        // QK-norm over the full width where the block has one (InternViT-6B): RMSNorm with
        // transformers' InternVLVisionRMSNorm eps (1e-6, not the config's).
        if (ggml_tensor* n = opt(b + "attn_q_norm.weight")) q = ggml_mul(ctx, ggml_rms_norm(ctx, q, 1e-6f), n);
        if (ggml_tensor* n = opt(b + "attn_k_norm.weight")) k = ggml_mul(ctx, ggml_rms_norm(ctx, k, 1e-6f), n);
        q = ggml_reshape_3d(ctx, q, hd, n_head, N);
        k = ggml_reshape_3d(ctx, k, hd, n_head, N);
        v = ggml_reshape_3d(ctx, linear(x, w(b + "attn_v.weight"), opt(b + "attn_v.bias")), hd, n_head, N);
    }
    if (rope_pos) {
        // 2-D RoPE: the first half of each head's pairs rotate with the row, the second with the column.
        int sections[4] = {static_cast<int>(hd / 4), static_cast<int>(hd / 4), 0, 0};
        q = ggml_rope_multi(ctx, q, rope_pos, nullptr, static_cast<int>(hd / 2), sections, GGML_ROPE_TYPE_VISION, 32768,
                            10000.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
        k = ggml_rope_multi(ctx, k, rope_pos, nullptr, static_cast<int>(hd / 2), sections, GGML_ROPE_TYPE_VISION, 32768,
                            10000.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f);
    } else if (rope) {
        q = rope(q);
        k = rope(k);
    }
    // Flash attention: the scores never leave a tile (the 1024x1024-per-head matrices of a
    // SigLIP view cost more memory traffic than the GEMMs). K/V stay f32: the CPU kernel's tiled
    // path computes in f32 anyway (f16 K/V would only add conversions), which also keeps the
    // f32 parity with transformers.
    ggml_tensor* Q = ggml_permute(ctx, q, 0, 2, 1, 3);  // [hd, N, n_head]
    ggml_tensor* K = ggml_permute(ctx, k, 0, 2, 1, 3);
    ggml_tensor* V = ggml_permute(ctx, v, 0, 2, 1, 3);
    if (mask && mask->type != GGML_TYPE_F16) {
        if (mask != mask_src_) {  // cast the shared window mask once, not once per layer
            mask_src_ = mask;
            mask_f16_ = ggml_cast(ctx, mask, GGML_TYPE_F16);
        }
        mask = mask_f16_;
    }
    ggml_tensor* o = ggml_flash_attn_ext(ctx, Q, K, V, mask, 1.0f / std::sqrt(static_cast<float>(hd)), 0.0f, 0.0f);
    ggml_prec_set_acc(o, GGML_PREC_F32);  // o: [hd, n_head, N]
    o = ggml_reshape_2d(ctx, o, hd * n_head, N);
    return linear(o, w(b + "attn_out.weight"), opt(b + "attn_out.bias"));
}

ggml_tensor* VisionGraph::vit_block(int64_t il, ggml_tensor* x, bool rms, VisionAct a, bool gated, ggml_tensor* rope_pos,
                                    ggml_tensor* mask) {
    const std::string b = "v.blk." + std::to_string(il) + ".";
    auto norm = [&](ggml_tensor* t, const char* n) {
        return rms ? rms_norm(t, w(b + n + ".weight")) : layer_norm(t, w(b + n + ".weight"), opt(b + n + ".bias"));
    };
    // Layer scale (ls1 / ls2: InternViT) multiplies each branch before its residual add.
    auto scaled = [&](ggml_tensor* t, const char* n) {
        ggml_tensor* ls = opt(b + n + ".weight");
        return ls ? ggml_mul(ctx, t, ls) : t;
    };
    x = ggml_add(ctx, x, scaled(attention(il, norm(x, "ln1"), rope_pos, mask), "ls1"));
    ggml_tensor* h = norm(x, "ln2");
    // Legacy LLaVA files store fc1 under ffn_down and fc2 under ffn_up.
    const std::string up = hp.ffn_swapped ? "ffn_down" : "ffn_up";
    const std::string down = hp.ffn_swapped ? "ffn_up" : "ffn_down";
    ggml_tensor* u = linear(h, w(b + up + ".weight"), opt(b + up + ".bias"));
    if (gated) {
        ggml_tensor* g = linear(h, w(b + "ffn_gate.weight"), opt(b + "ffn_gate.bias"));
        u = ggml_mul(ctx, act(g, a), u);
    } else {
        u = act(u, a);
    }
    return ggml_add(ctx, x, scaled(linear(u, w(b + down + ".weight"), opt(b + down + ".bias")), "ls2"));
}

ggml_tensor* VisionGraph::pixel_shuffle(ggml_tensor* x, int64_t gw, int64_t gh, int64_t s) {
    const int64_t E = x->ne[0];
    // [E, gw, gh] -> [E*s, gw/s, s, gh/s]: feature e + E*k holds column offset k; dim 2 is the row offset m.
    x = ggml_reshape_4d(ctx, ggml_cont(ctx, x), E * s, gw / s, s, gh / s);
    x = ggml_cont(ctx, ggml_permute(ctx, x, 0, 2, 1, 3));  // [E*s, s, gw/s, gh/s]
    return ggml_reshape_2d(ctx, x, E * s * s, (gw / s) * (gh / s));
}

ggml_tensor* VisionGraph::input_i32(const std::vector<int32_t>& data) {
    ggml_tensor* t = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, static_cast<int64_t>(data.size()));
    ggml_set_input(t);
    HostInput in{t, std::vector<char>(data.size() * sizeof(int32_t))};
    std::memcpy(in.bytes.data(), data.data(), in.bytes.size());
    inputs_.push_back(std::move(in));
    return t;
}

ggml_tensor* VisionGraph::input_f32(std::vector<float> data, int64_t ne0, int64_t ne1, int64_t ne2) {
    ggml_tensor* t = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, ne0, ne1, ne2);
    ggml_set_input(t);
    HostInput in{t, std::vector<char>(data.size() * sizeof(float))};
    std::memcpy(in.bytes.data(), data.data(), in.bytes.size());
    inputs_.push_back(std::move(in));
    return t;
}

void VisionGraph::set_inputs() const {
    for (const auto& in : inputs_) ggml_backend_tensor_set(in.t, in.bytes.data(), 0, in.bytes.size());
}

}  // namespace corehead
