// Qwen3-VL: a ViT with a learned position grid (resampled bilinearly, corners aligned, to each
// image's patch grid), 2-D rotary positions, fused q/k/v, LayerNorm blocks with a tanh-GELU MLP,
// and a 2x2 merger; the outputs of the DeepStack blocks go through their own mergers (norm after
// the 2x2 concatenation) and ride along: the projector emits n_out * (1 + n_deepstack) values per
// visual token, main embedding first, as llama.cpp's mmproj does. The text model adds DeepStack
// slice i to the output of its layer i (text/qwen3vl.cpp).
//
// Patches stay row-major, as for Qwen2-VL (vision/qwen2vl.cpp): transformers' 2x2 merge-block
// order only permutes tokens, which the full attention does not see.
#include <algorithm>
#include <cmath>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

// The released Qwen3-VL preprocessor_config.json: size {shortest_edge: 65536, longest_edge: 16777216}.
constexpr int64_t kMinPixels = 65536, kMaxPixels = 16777216;

class Qwen3VLMergerFamily final : public VisionFamily {
public:
    const char* projector() const override { return "qwen3vl_merger"; }
    const char* image_token() const override { return "<|image_pad|>"; }
    bool mrope_positions() const override { return true; }
    PromptPositions positions(int64_t n, const std::vector<VisualSpan>& spans,
                              const std::vector<PreparedImage>& images) const override {
        // Images take the same 3-D positions as Qwen2-VL (transformers' Qwen3-VL get_rope_index).
        return mrope_prompt_positions(n, spans, images);
    }
    // Qwen3.5 (qwen35, qwen35moe) uses the same ViT and merger without DeepStack blocks.
    std::vector<std::string> text_archs() const override { return {"qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe"}; }
    std::vector<std::string> layout_tokens() const override { return {"<|vision_start|>", "<|vision_end|>"}; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.spatial_merge = f.find_int("clip.vision.spatial_merge_size").value_or(2);
        if (hp.spatial_merge <= 0 || hp.spatial_merge > 16) f.fail("clip.vision.spatial_merge_size is out of range");
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (Qwen3-VL merger output)");
        hp.n_out = out->ne[1];
        if ((hp.n_embd / hp.n_head) % 4 != 0) f.fail("the vision head size must be a multiple of 4 (2-D RoPE)");
        if (auto ds = f.find_bool_array("clip.vision.is_deepstack_layers")) {
            if (static_cast<int64_t>(ds->size()) != hp.n_layer) {
                f.fail("clip.vision.is_deepstack_layers has " + std::to_string(ds->size()) + " entries for " +
                       std::to_string(hp.n_layer) + " ViT blocks");
            }
            for (int64_t i = 0; i < hp.n_layer; ++i) {
                if ((*ds)[i]) hp.deepstack_layers.push_back(i);
            }
        }
        if (hp.patches_per_side() <= 0) f.fail("clip.vision.image_size gives no learned position grid");
        if (hp.min_pixels <= 0) hp.min_pixels = kMinPixels;
        if (hp.max_pixels <= 0) hp.max_pixels = kMaxPixels;
        if (hp.min_pixels > hp.max_pixels) f.fail("clip.vision.image_min_pixels exceeds image_max_pixels");
        // The released Qwen3-VL video_preprocessor_config: size {shortest_edge 4096, longest_edge
        // 25165824}, bounds on all frames together (llama.cpp's converter does not store them).
        hp.video_min_pixels = 4096;
        hp.video_max_pixels = 25165824;
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile&, const VisionHParams& hp) const override {
        const int64_t P = hp.patch_size, side = hp.patches_per_side();
        const int64_t merged = hp.n_embd * hp.spatial_merge * hp.spatial_merge;
        std::vector<TensorSpec> s = {{"v.patch_embd.weight.1", {P, P, 3, hp.n_embd}}};  // the second temporal kernel
        add_patch_embedding_specs(s, hp, side * side);
        add_post_ln_specs(s, hp, true, true);
        add_mlp_projector_specs(s, merged, merged, hp.n_out);
        add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false, /*fused_qkv=*/true);
        for (int64_t l : hp.deepstack_layers) {
            const std::string b = "v.deepstack." + std::to_string(l) + ".";
            s.push_back({b + "norm.weight", {merged}});
            s.push_back({b + "norm.bias", {merged}});
            s.push_back({b + "fc1.weight", {merged, merged}});
            s.push_back({b + "fc1.bias", {merged}});
            s.push_back({b + "fc2.weight", {merged, hp.n_out}});
            s.push_back({b + "fc2.bias", {hp.n_out}});
        }
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override { return qwen_prepare(img, hp); }
    PreparedImage prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>& timestamps, double,
                                const VisionHParams& hp) const override {
        return qwen_prepare_video(frames, timestamps, hp, 0.0f, true);  // timestamps in the text, not in M-RoPE
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        const int64_t gw = g.grid_w, gh = g.grid_h, m = hp.spatial_merge;
        ggml_tensor* x = g.temporal_patch_embed();
        x = ggml_add(ctx, x, position_embeddings(g));

        ggml_tensor* rope_pos = g.input_i32(rope_2d_positions(gw, gh));

        std::vector<ggml_tensor*> deepstack;
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            x = g.vit_block(il, x, false, VisionAct::GeluTanh, false, rope_pos);
            if (std::find(hp.deepstack_layers.begin(), hp.deepstack_layers.end(), il) == hp.deepstack_layers.end()) continue;
            // DeepStack merger: 2x2 concatenation first, then its norm and MLP.
            const std::string b = "v.deepstack." + std::to_string(il) + ".";
            ggml_tensor* d = g.layer_norm(g.pixel_shuffle(x, gw, gh, m), g.w(b + "norm.weight"), g.w(b + "norm.bias"));
            d = g.act(g.linear(d, g.w(b + "fc1.weight"), g.w(b + "fc1.bias")), VisionAct::GeluErf);
            deepstack.push_back(g.linear(d, g.w(b + "fc2.weight"), g.w(b + "fc2.bias")));
        }
        // Main merger: norm per patch, 2x2 concatenation, MLP.
        x = g.layer_norm(x, g.w("v.post_ln.weight"), g.w("v.post_ln.bias"));
        ggml_tensor* out = g.mlp_projector(g.pixel_shuffle(x, gw, gh, m));
        for (ggml_tensor* d : deepstack) out = ggml_concat(ctx, out, d, 0);
        return out;
    }

private:
    // transformers' bilinear, corners-aligned resampling of the learned side x side grid to the
    // image's gh x gw patches: four weighted rows of the table per patch.
    static ggml_tensor* position_embeddings(VisionGraph& g) {
        const int64_t side = g.hp.patches_per_side(), gw = g.grid_w, gh = g.grid_h, N = g.n_patches;
        struct Taps {
            int64_t lo, hi;
            float w_lo, w_hi;
        };
        auto axis = [side](int64_t i, int64_t size) {
            const float src = static_cast<float>(i) * static_cast<float>(side - 1) / static_cast<float>(std::max<int64_t>(size - 1, 1));
            const float fl = std::floor(src);
            const int64_t lo = std::min<int64_t>(static_cast<int64_t>(fl), side - 1);
            return Taps{lo, std::min<int64_t>(lo + 1, side - 1), 1.0f - (src - fl), src - fl};
        };
        std::vector<std::vector<int32_t>> idx(4, std::vector<int32_t>(static_cast<size_t>(N)));
        std::vector<std::vector<float>> wt(4, std::vector<float>(static_cast<size_t>(N)));
        for (int64_t r = 0; r < gh; ++r) {
            const Taps tr = axis(r, gh);
            for (int64_t c = 0; c < gw; ++c) {
                const Taps tc = axis(c, gw);
                const int64_t i = r * gw + c;
                const int64_t rows[2] = {tr.lo, tr.hi}, cols[2] = {tc.lo, tc.hi};
                const float wr[2] = {tr.w_lo, tr.w_hi}, wc[2] = {tc.w_lo, tc.w_hi};
                for (int k = 0; k < 4; ++k) {
                    idx[k][i] = static_cast<int32_t>(rows[k / 2] * side + cols[k % 2]);
                    wt[k][i] = wr[k / 2] * wc[k % 2];
                }
            }
        }
        ggml_tensor* table = g.w("v.position_embd.weight");
        ggml_tensor* sum = nullptr;
        for (int k = 0; k < 4; ++k) {
            ggml_tensor* rows = ggml_get_rows(g.ctx, table, g.input_i32(idx[k]));  // [E, N] f32
            ggml_tensor* term = ggml_mul(g.ctx, rows, g.input_f32(std::move(wt[k]), 1, N));
            sum = sum ? ggml_add(g.ctx, sum, term) : term;
        }
        return sum;
    }
};

}  // namespace

const VisionFamily& qwen3vl_merger_family() {
    static const Qwen3VLMergerFamily f;
    return f;
}

}  // namespace corehead
