// Qwen2-VL and Qwen2.5-VL: ViT with 2-D rotary positions, two temporal patch-embedding
// kernels, and an MLP merger over 2x2 neighbouring patches. Qwen2.5-VL adds RMSNorm,
// SwiGLU and window attention with a few full-attention layers.
//
// Patches stay in row-major order here: the merger's 2x2 grouping is a pixel shuffle, and
// window attention is a mask (equivalent to transformers' window reordering, which only
// permutes tokens).
#include <cmath>
#include <limits>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

class QwenMergerFamily : public VisionFamily {
public:
    explicit QwenMergerFamily(bool v25) : v25_(v25) {}
    const char* projector() const override { return v25_ ? "qwen2.5vl_merger" : "qwen2vl_merger"; }
    const char* image_token() const override { return "<|image_pad|>"; }
    bool mrope_positions() const override { return true; }
    PromptPositions positions(int64_t n, const std::vector<VisualSpan>& spans,
                              const std::vector<PreparedImage>& images) const override {
        return mrope_prompt_positions(n, spans, images);
    }
    std::vector<std::string> text_archs() const override { return {"qwen2vl"}; }
    std::vector<std::string> layout_tokens() const override { return {"<|vision_start|>", "<|vision_end|>"}; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.spatial_merge = f.find_int("clip.vision.spatial_merge_size").value_or(2);
        if (hp.spatial_merge <= 0 || hp.spatial_merge > 16) f.fail("clip.vision.spatial_merge_size is out of range");
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (Qwen-VL merger output)");
        hp.n_out = out->ne[1];
        if (!v25_) {
            // llama.cpp's converter writes Qwen2-VL's config hidden_size (the merger / language
            // model width, 1536 for Qwen2-VL-2B) as clip.vision.feed_forward_length; the ViT MLP
            // width (embed_dim * mlp_ratio, 5120) is only in the tensors, which llama.cpp reads.
            if (const ggml_tensor* up = f.find_tensor("v.blk.0.ffn_up.weight")) hp.n_ff = up->ne[1];
        }
        if ((hp.n_embd / hp.n_head) % 4 != 0) f.fail("the vision head size must be a multiple of 4 (2-D RoPE)");
        if (v25_) {
            if (auto v = f.find_int_array("clip.vision.wa_layer_indexes")) {
                hp.full_attn_layers = *v;
            } else if (auto n = f.find_int("clip.vision.n_wa_pattern")) {
                if (*n <= 0) f.fail("clip.vision.n_wa_pattern must be positive");
                for (int64_t i = *n - 1; i < hp.n_layer; i += *n) hp.full_attn_layers.push_back(i);
            }
            for (int64_t l : hp.full_attn_layers) {
                if (l < 0 || l >= hp.n_layer) f.fail("full-attention layer index " + std::to_string(l) + " is out of range");
            }
            hp.window_size = f.find_int("clip.vision.window_size").value_or(112);
            const int64_t unit = hp.patch_size * hp.spatial_merge;
            if (hp.window_size < unit || hp.window_size % unit != 0) {
                f.fail("clip.vision.window_size must be a multiple of patch_size * spatial_merge_size");
            }
        }
        // transformers' Qwen2VLImageProcessor defaults when the file does not say.
        if (hp.min_pixels <= 0) hp.min_pixels = 56 * 56;
        if (hp.max_pixels <= 0) hp.max_pixels = 28 * 28 * 1280;
        if (hp.min_pixels > hp.max_pixels) f.fail("clip.vision.image_min_pixels exceeds image_max_pixels");
        // Videos: the released Qwen2-VL / Qwen2.5-VL checkpoints have no video processor config of
        // their own, so their video processor takes the image bounds; tokens_per_second is 2 in
        // every released Qwen2.5-VL config (llama.cpp's converter does not store it).
        hp.video_min_pixels = hp.min_pixels;
        hp.video_max_pixels = hp.max_pixels;
        hp.tokens_per_second = 2.0;
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile&, const VisionHParams& hp) const override {
        const int64_t P = hp.patch_size, merged = hp.n_embd * hp.spatial_merge * hp.spatial_merge;
        std::vector<TensorSpec> s = {{"v.patch_embd.weight.1", {P, P, 3, hp.n_embd}}};  // the second temporal kernel
        add_patch_embedding_specs(s, hp, 0);
        add_post_ln_specs(s, hp, true, !v25_);
        add_mlp_projector_specs(s, merged, merged, hp.n_out);
        add_vit_block_specs(s, hp, /*rms_norm=*/v25_, /*gated_ffn=*/v25_);
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override { return qwen_prepare(img, hp); }
    PreparedImage prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>& timestamps, double fps,
                                const VisionHParams& hp) const override {
        // Qwen2-VL: temporal patches one M-RoPE step apart; Qwen2.5-VL: tokens_per_second *
        // second_per_grid_t (= 2 / fps) steps, in float32 as torch computes it.
        float interval = 1.0f;
        if (v25_) {
            if (!(fps > 0.0)) throw InputError("Qwen2.5-VL needs the video's frame rate (fps > 0)");
            interval = static_cast<float>(hp.tokens_per_second) * static_cast<float>(2.0 / fps);
        }
        return qwen_prepare_video(frames, timestamps, hp, interval, false);
    }

    ggml_tensor* build(VisionGraph& g) const override {
        const VisionHParams& hp = g.hp;
        const int64_t gw = g.grid_w, gh = g.grid_h, N = g.n_patches, m = hp.spatial_merge;
        ggml_tensor* x = g.temporal_patch_embed();

        ggml_tensor* rope_pos = g.input_i32(rope_2d_positions(gw, gh));  // 2-D RoPE (row, column)

        ggml_tensor* window_mask = nullptr;
        if (v25_) {
            // Windows of window_size pixels (in merged units), aligned at the top-left corner.
            const int64_t wu = hp.window_size / (hp.patch_size * m);
            const int64_t n_wc = (gw / m + wu - 1) / wu;
            std::vector<int64_t> win(static_cast<size_t>(N));
            for (int64_t r = 0; r < gh; ++r) {
                for (int64_t c = 0; c < gw; ++c) win[r * gw + c] = (r / m / wu) * n_wc + (c / m / wu);
            }
            std::vector<float> mask(static_cast<size_t>(N * N));
            const float neg_inf = -std::numeric_limits<float>::infinity();
            for (int64_t q = 0; q < N; ++q) {
                for (int64_t k = 0; k < N; ++k) mask[q * N + k] = win[q] == win[k] ? 0.0f : neg_inf;
            }
            window_mask = g.input_f32(std::move(mask), N, N);
        }
        const VisionAct a = v25_ ? VisionAct::Silu : VisionAct::QuickGelu;
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            bool full = true;
            if (v25_) {
                full = false;
                for (int64_t l : hp.full_attn_layers) full = full || l == il;
            }
            x = g.vit_block(il, x, v25_, a, v25_, rope_pos, full ? nullptr : window_mask);
        }
        // Merger: norm per patch, 2x2 patches concatenated, MLP.
        x = v25_ ? g.rms_norm(x, g.w("v.post_ln.weight")) : g.layer_norm(x, g.w("v.post_ln.weight"), g.opt("v.post_ln.bias"));
        x = g.pixel_shuffle(x, gw, gh, m);
        return g.mlp_projector(x);
    }

private:
    bool v25_;
};

}  // namespace

const VisionFamily& qwen2vl_merger_family() {
    static const QwenMergerFamily f(false);
    return f;
}

const VisionFamily& qwen25vl_merger_family() {
    static const QwenMergerFamily f(true);
    return f;
}

}  // namespace corehead
