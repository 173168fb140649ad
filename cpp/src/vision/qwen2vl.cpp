// Qwen2-VL and Qwen2.5-VL: ViT with 2-D rotary positions, two temporal patch-embedding
// kernels, and an MLP merger over 2x2 neighbouring patches. Qwen2.5-VL adds RMSNorm,
// SwiGLU and window attention with a few full-attention layers.
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/families.h"
#include "vision/family.h"

namespace corehead {

namespace {

class QwenMergerFamily : public VisionFamily {
public:
    explicit QwenMergerFamily(bool v25) : v25_(v25) {}
    const char* projector() const override { return v25_ ? "qwen2.5vl_merger" : "qwen2vl_merger"; }

    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.spatial_merge = f.find_int("clip.vision.spatial_merge_size").value_or(2);
        if (hp.spatial_merge <= 0 || hp.spatial_merge > 16) f.fail("clip.vision.spatial_merge_size is out of range");
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (Qwen-VL merger output)");
        hp.n_out = out->ne[1];
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
        }
    }

    std::vector<TensorSpec> tensor_specs(const GgufFile&, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, P = hp.patch_size;
        const int64_t merged = E * hp.spatial_merge * hp.spatial_merge;
        std::vector<TensorSpec> s = {
            {"v.patch_embd.weight", {P, P, 3, E}},
            {"v.patch_embd.weight.1", {P, P, 3, E}},
            {"v.patch_embd.bias", {E}, false},
            {"v.post_ln.weight", {E}},
            {"v.post_ln.bias", {E}, !v25_},
            {"mm.0.weight", {merged, merged}},
            {"mm.0.bias", {merged}},
            {"mm.2.weight", {merged, hp.n_out}},
            {"mm.2.bias", {hp.n_out}},
        };
        add_vit_block_specs(s, hp, /*rms_norm=*/v25_, /*gated_ffn=*/v25_);
        return s;
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
