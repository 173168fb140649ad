// Gemma 3: SigLIP ViT (no CLS) + 4x4 average pooling + soft-embedding RMSNorm + a
// linear input projection into the text model.
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/families.h"
#include "vision/family.h"

namespace corehead {

namespace {

class Gemma3VisionFamily final : public VisionFamily {
public:
    const char* projector() const override { return "gemma3"; }
    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        const ggml_tensor* proj = f.find_tensor("mm.input_projection.weight");
        if (!proj) f.fail("missing tensor 'mm.input_projection.weight' (Gemma 3 projector)");
        hp.n_out = proj->ne[0];  // stored as [n_out, n_embd] and transposed in the graph
        hp.scale_factor = f.find_int("clip.vision.projector.scale_factor").value_or(4);
        if (hp.scale_factor <= 0 || hp.patches_per_side() % hp.scale_factor != 0) {
            f.fail("the pooling factor must divide the patches per side");
        }
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
            {"mm.input_projection.weight", {hp.n_out, E}},
            {"mm.soft_emb_norm.weight", {E}},
        };
        add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false);
        return s;
    }
};

}  // namespace

const VisionFamily& gemma3_vision_family() {
    static const Gemma3VisionFamily f;
    return f;
}

}  // namespace corehead
