// Gemma 3: SigLIP ViT (no CLS) + average pooling (scale_factor x scale_factor patches per
// token) + soft-embedding RMSNorm + a linear input projection into the text model (stored
// as HF's [n_embd, n_out] matrix, transposed in the graph). Preprocessing as transformers'
// Gemma3ImageProcessor without pan-and-scan: squash to image_size (bilinear).
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

class Gemma3VisionFamily final : public VisionFamily {
public:
    const char* projector() const override { return "gemma3"; }
    const char* image_token() const override { return "<image_soft_token>"; }
    bool bidirectional_image() const override { return true; }
    std::vector<std::string> text_archs() const override { return {"gemma3"}; }
    std::vector<std::string> layout_tokens() const override {
        return {"<start_of_image>", "<end_of_image>", "<image_soft_token>"};
    }
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
        const int64_t E = hp.n_embd;
        std::vector<TensorSpec> s = {
            {"mm.input_projection.weight", {hp.n_out, E}},
            {"mm.soft_emb_norm.weight", {E}},
        };
        add_siglip_specs(s, hp);
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t S = hp.image_size;
        const int64_t g = hp.patches_per_side() / hp.scale_factor;
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        p.views.push_back(make_view(resize(img, S, S, Resample::Bilinear), hp,
                                    {0.0, 0.0, static_cast<double>(img.width), static_cast<double>(img.height)}, g, g));
        p.layout = {{"\n\n<start_of_image>", -1}, {"", 0}, {"<end_of_image>\n\n", -1}};
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        ggml_tensor* x = g.siglip_tower();
        // Average pooling over s x s patches: [E, gw*gh] -> [gw, gh, E] -> pool -> [E, n_tokens].
        const int s = static_cast<int>(hp.scale_factor);
        x = ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_transpose(ctx, x)), g.grid_w, g.grid_h, hp.n_embd);
        x = ggml_pool_2d(ctx, x, GGML_OP_POOL_AVG, s, s, s, s, 0, 0);
        x = ggml_reshape_2d(ctx, x, x->ne[0] * x->ne[1], hp.n_embd);
        x = ggml_cont(ctx, ggml_transpose(ctx, x));
        x = g.rms_norm(x, g.w("mm.soft_emb_norm.weight"));  // the +1 of Gemma's norm is in the stored weight
        ggml_tensor* proj = ggml_cont(ctx, ggml_transpose(ctx, g.w("mm.input_projection.weight")));
        return ggml_mul_mat(ctx, proj, x);
    }
};

}  // namespace

const VisionFamily& gemma3_vision_family() {
    static const Gemma3VisionFamily f;
    return f;
}

}  // namespace corehead
