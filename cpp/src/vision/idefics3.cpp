// Idefics3 / SmolVLM: SigLIP ViT (no CLS) + pixel shuffle (scale_factor^2 patches per
// token) + one linear projector.
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/families.h"
#include "vision/family.h"

namespace corehead {

namespace {

class Idefics3Family final : public VisionFamily {
public:
    const char* projector() const override { return "idefics3"; }
    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.scale_factor = f.find_int("clip.vision.projector.scale_factor").value_or(2);
        if (hp.scale_factor <= 0 || hp.patches_per_side() % hp.scale_factor != 0) {
            f.fail("clip.vision.projector.scale_factor must divide the patches per side (" +
                   std::to_string(hp.patches_per_side()) + ")");
        }
        const ggml_tensor* fc = f.find_tensor("mm.model.fc.weight");
        if (!fc) f.fail("missing tensor 'mm.model.fc.weight' (Idefics3 projector)");
        hp.n_out = fc->ne[1];
    }
    std::vector<TensorSpec> tensor_specs(const GgufFile&, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd, P = hp.patch_size;
        const int64_t n_patches = hp.patches_per_side() * hp.patches_per_side();
        std::vector<TensorSpec> s = {
            {"v.patch_embd.weight", {P, P, 3, E}},
            {"v.patch_embd.bias", {E}, false},
            {"v.position_embd.weight", {E, n_patches}},
            {"v.post_ln.weight", {E}},
            {"v.post_ln.bias", {E}},
            {"mm.model.fc.weight", {E * hp.scale_factor * hp.scale_factor, hp.n_out}},
        };
        add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false);
        return s;
    }
};

}  // namespace

const VisionFamily& idefics3_family() {
    static const Idefics3Family f;
    return f;
}

}  // namespace corehead
