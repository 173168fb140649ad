// LLaVA-1.5: CLIP ViT (CLS token, pre-LN, learned positions) + 2-layer MLP projector.
// Preprocessing as transformers' CLIPImageProcessor: shortest edge to image_size (bicubic),
// center crop. Like transformers (and unlike llama.cpp's llava graph of this snapshot, issue
// #25814) the CLS token is position 0 and is dropped after the tower.
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

class LlavaMlpFamily final : public VisionFamily {
public:
    const char* projector() const override { return "mlp"; }
    const char* image_token() const override { return "<image>"; }
    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        const ggml_tensor* out = f.find_tensor("mm.2.weight");
        if (!out) f.fail("missing tensor 'mm.2.weight' (LLaVA MLP projector output)");
        hp.n_out = out->ne[1];
        if (hp.feature_layers.size() > 1) {
            f.fail("clip.vision.feature_layer lists several layers (LLaVA-NeXT style); only LLaVA-1.5 is supported");
        }
    }
    std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const override {
        const int64_t E = hp.n_embd;
        const int64_t n_patches = hp.patches_per_side() * hp.patches_per_side();
        const bool has_cls = f.find_tensor("v.class_embd") != nullptr;
        const ggml_tensor* mm0 = f.find_tensor("mm.0.weight");
        std::vector<TensorSpec> s = {
            {"v.class_embd", {E}, false},
            {"v.pre_ln.weight", {E}, false},
            {"v.pre_ln.bias", {E}, false},
        };
        add_patch_embedding_specs(s, hp, n_patches + (has_cls ? 1 : 0));
        add_post_ln_specs(s, hp, false, false);
        add_mlp_projector_specs(s, E, mm0 ? mm0->ne[1] : 0, hp.n_out);
        add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false);
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t S = hp.image_size;
        // transformers' get_resize_output_image_size(shortest_edge=S, default_to_square=False)
        int64_t w = img.width, h = img.height;
        const int64_t short_side = std::min(w, h), long_side = std::max(w, h);
        if (short_side != S) {
            const int64_t new_long = static_cast<int64_t>(static_cast<double>(S) * long_side / short_side);
            if (w <= h) {
                w = S;
                h = new_long;
            } else {
                w = new_long;
                h = S;
            }
        }
        const int64_t top = (h - S) / 2, left = (w - S) / 2;
        // resize + center crop, computing only the crop (a 1x10000 image would otherwise become
        // an S x 10000*S intermediate).
        const ImageU8 cropped = resize_crop(img, w, h, Resample::Bicubic, left, top, S, S);
        const double sx = static_cast<double>(img.width) / w, sy = static_cast<double>(img.height) / h;
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        const int64_t g = hp.patches_per_side();
        p.views.push_back(make_view(cropped, hp, {left * sx, top * sy, (left + S) * sx, (top + S) * sy}, g, g));
        p.layout.push_back({"", 0});
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        ggml_context* ctx = g.ctx;
        const VisionHParams& hp = g.hp;
        ggml_tensor* x = g.embed_patches();
        ggml_tensor* cls = g.opt("v.class_embd");
        if (cls) x = ggml_concat(ctx, ggml_reshape_2d(ctx, g.f32(cls), hp.n_embd, 1), x, 1);  // CLS first, as transformers
        x = ggml_add(ctx, x, g.f32(g.w("v.position_embd.weight")));
        if (ggml_tensor* pre = g.opt("v.pre_ln.weight")) x = g.layer_norm(x, pre, g.opt("v.pre_ln.bias"));
        // The legacy converter keeps exactly the blocks up to the feature layer (-2): run them all.
        const VisionAct a = hp.use_gelu ? VisionAct::GeluErf : VisionAct::QuickGelu;
        for (int64_t il = 0; il < hp.n_layer; ++il) x = g.vit_block(il, x, false, a, false);
        if (cls) x = ggml_view_2d(ctx, x, hp.n_embd, g.n_patches, x->nb[1], x->nb[1]);  // drop CLS
        return g.mlp_projector(ggml_cont(ctx, x));
    }
};

}  // namespace

const VisionFamily& llava_mlp_family() {
    static const LlavaMlpFamily f;
    return f;
}

}  // namespace corehead
