// Building blocks for vision encoder graphs (ViT blocks, patch embedding, 2-D RoPE, pixel
// shuffle), shared by the families in vision/<family>.cpp. An f32 mmproj gets exact f32
// activations (the CPU backend's table-based GELU variants are only f16-accurate); f16 and
// quantized files get the faster table variants, whose error is below their weights' rounding.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ggml.h"
#include "vision/family.h"
#include "vision/hparams.h"

namespace corehead {

class Weights;

enum class VisionAct { GeluErf, GeluTanh, QuickGelu, Silu };

class VisionGraph {
public:
    VisionGraph(ggml_context* ctx, ggml_cgraph* gf, const VisionHParams& hp, const Weights& w, const VisionView& view);

    ggml_context* const ctx;
    ggml_cgraph* const gf;
    const VisionHParams& hp;
    const Weights& weights;
    const VisionView& view;
    const int64_t grid_w, grid_h;  // patches per row / column
    const int64_t n_patches;
    // True for an f32 mmproj: tanh / quick GELU then use exact f32 formulas (the parity
    // fixtures); f16 / quantized files get ggml's faster f16-accurate table variants.
    const bool exact;

    // A family's own rotary embedding of q and k ([hd, n_head, N]), applied by attention() when no
    // rope_pos is given (Pixtral: 2-D RoPE on the converter's permuted q/k rows).
    std::function<ggml_tensor*(ggml_tensor*)> rope;

    ggml_tensor* w(const std::string& name) const;    // throws ModelError when absent
    ggml_tensor* opt(const std::string& name) const;  // nullptr when absent
    // `t` as F32 (a cast node when stored otherwise): for weights that enter element-wise ops
    // (position / class embeddings), which ggml's CPU kernels take only in f32.
    ggml_tensor* f32(ggml_tensor* t);

    // The view's pixels as [width, height, 3].
    ggml_tensor* pixels();
    // Patch embedding (convolution with stride = patch) for `kernel` ([P, P, 3, E]) of `img`
    // ([width, height, 3]; default pixels()): [E, n_patches], patches row-major.
    ggml_tensor* patch_embed(ggml_tensor* kernel, ggml_tensor* img = nullptr);

    // patch_embed with v.patch_embd.weight, plus its bias when present: [E, n_patches].
    ggml_tensor* embed_patches();
    // Qwen-VL's Conv3D over a temporal patch of two frames, which llama.cpp's converter splits
    // into v.patch_embd.weight (the first frame's kernel) and v.patch_embd.weight.1 (the second's):
    // kernel 0 on the view's frame + kernel 1 on its next frame (a still image: the same frame
    // for both), plus the bias when present: [E, n_patches].
    ggml_tensor* temporal_patch_embed();
    // A SigLIP tower (Idefics3, Gemma 3): patches + learned positions, the ViT blocks with tanh
    // GELU, the final LayerNorm: [E, n_patches].
    ggml_tensor* siglip_tower();
    // The MLP projector mm.0 -> GELU (erf) -> mm.2 (add_mlp_projector_specs).
    ggml_tensor* mlp_projector(ggml_tensor* x);

    ggml_tensor* linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias = nullptr);
    ggml_tensor* layer_norm(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias);
    ggml_tensor* rms_norm(ggml_tensor* x, ggml_tensor* weight);
    ggml_tensor* act(ggml_tensor* x, VisionAct a);

    // Full (non-causal) multi-head self-attention of block `il` on x [E, N]; `rope_pos` (2-D
    // vision RoPE positions, 4*N) and `mask` ([N, N] f32, 0 / -inf) are optional.
    ggml_tensor* attention(int64_t il, ggml_tensor* x, ggml_tensor* rope_pos, ggml_tensor* mask);
    // One pre-norm ViT block: x + attn(norm1(x)); x + mlp(norm2(x)); with layer scale
    // (v.blk.N.ls1 / ls2) and q/k norms (attn_q_norm / attn_k_norm) where the file has them.
    ggml_tensor* vit_block(int64_t il, ggml_tensor* x, bool rms, VisionAct a, bool gated, ggml_tensor* rope_pos = nullptr,
                           ggml_tensor* mask = nullptr);

    // [E, gw*gh] row-major -> [E*s*s, (gw/s)*(gh/s)]: each output token concatenates the s x s
    // patches of its block, row by row (Idefics3's pixel shuffle, Qwen-VL's merger order).
    ggml_tensor* pixel_shuffle(ggml_tensor* x, int64_t gw, int64_t gh, int64_t s);

    // Graph inputs filled from host data after allocation.
    ggml_tensor* input_i32(const std::vector<int32_t>& data);
    ggml_tensor* input_f32(std::vector<float> data, int64_t ne0, int64_t ne1 = 1, int64_t ne2 = 1);
    void set_inputs() const;

private:
    static bool weights_are_f32(const Weights& wt);
    ggml_tensor* mask_src_ = nullptr;
    ggml_tensor* mask_f16_ = nullptr;
    struct HostInput {
        ggml_tensor* t;
        std::vector<char> bytes;
    };
    std::vector<HostInput> inputs_;
};

}  // namespace corehead
