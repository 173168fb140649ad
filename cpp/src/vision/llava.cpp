// LLaVA-1.5: CLIP ViT (CLS token, pre-LN, learned positions) + 2-layer MLP projector.
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/families.h"
#include "vision/family.h"

namespace corehead {

namespace {

class LlavaMlpFamily final : public VisionFamily {
public:
    const char* projector() const override { return "mlp"; }
    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (LLaVA MLP projector output)");
        hp.n_out = out->ne[1];
    }
    std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, P = hp.patch_size;
        const int64_t n_patches = hp.patches_per_side() * hp.patches_per_side();
        const bool has_cls = f.find_tensor("v.class_embd") != nullptr;
        const ggml_tensor* mm0 = f.find_tensor("mm.0.weight");
        const int64_t hidden = mm0 ? mm0->ne[1] : 0;
        std::vector<TensorSpec> s = {
            {"v.patch_embd.weight", {P, P, 3, E}},
            {"v.patch_embd.bias", {E}, false},
            {"v.class_embd", {E}, false},
            {"v.position_embd.weight", {E, n_patches + (has_cls ? 1 : 0)}},
            {"v.pre_ln.weight", {E}, false},
            {"v.pre_ln.bias", {E}, false},
            {"v.post_ln.weight", {E}, false},
            {"v.post_ln.bias", {E}, false},
            {"mm.0.weight", {E, hidden}},
            {"mm.0.bias", {hidden}},
            {"mm.2.weight", {hidden, hp.n_out}},
            {"mm.2.bias", {hp.n_out}},
        };
        add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false);
        return s;
    }
};

}  // namespace

const VisionFamily& llava_mlp_family() {
    static const LlavaMlpFamily f;
    return f;
}

}  // namespace corehead
