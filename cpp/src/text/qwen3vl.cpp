// Qwen3-VL text decoders: Qwen3 (QK-norm, no q/k/v biases) with interleaved M-RoPE (the
// temporal/height/width rotary pairs alternate, GGML_ROPE_TYPE_IMROPE) and DeepStack: the
// mmproj's extra visual features are added to the outputs of the first n_deepstack layers at the
// image positions. qwen3vlmoe replaces every FFN by a mixture of experts.
//
// What "a head" is stays the same: an attention head of a text layer. DeepStack adds residual
// features (not heads) and experts are FFNs, so taps, ablation, knockout and CoRe-sparse act on
// the attention heads exactly as for qwen3.
#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Qwen3VLFamily : public TextFamily {
public:
    const char* arch() const override { return "qwen3vl"; }
    RopePositions positions() const override { return RopePositions::mrope; }
    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        read_rope_sections(f, hp);
        const std::string key = hp.arch + ".n_deepstack_layers";
        hp.n_deepstack = f.find_int(key).value_or(0);
        if (hp.n_deepstack < 0 || hp.n_deepstack > hp.n_layer) {
            f.fail("'" + key + "' = " + std::to_string(hp.n_deepstack) + " is out of range (0.." +
                   std::to_string(hp.n_layer) + " layers)");
        }
    }
    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        add_embedding_tensors(hp, t, /*rope_freqs=*/false);
        add_attention_tensors(hp, t, /*biases=*/false, false);
        t.add_layers("attn_q_norm.weight", {hp.head_dim_k}, &LayerWeights::q_norm);
        t.add_layers("attn_k_norm.weight", {hp.head_dim_k}, &LayerWeights::k_norm);
        ffn_tensors(hp, t);
    }
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, GGML_ROPE_TYPE_IMROPE); }

protected:
    virtual void ffn_tensors(const TextHParams& hp, TextTensorTable& t) const { add_ffn_tensors(hp, t); }
};

class Qwen3VLMoeFamily final : public Qwen3VLFamily {
public:
    const char* arch() const override { return "qwen3vlmoe"; }
    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        Qwen3VLFamily::read_hparams(f, hp);
        const std::string a = hp.arch + ".";
        hp.n_expert = f.get_int(a + "expert_count");
        hp.n_expert_used = f.get_int(a + "expert_used_count");
        if (hp.n_expert < 1 || hp.n_expert > 4096) f.fail("'" + a + "expert_count' is out of range");
        if (hp.n_expert_used < 1 || hp.n_expert_used > hp.n_expert) {
            f.fail("'" + a + "expert_used_count' = " + std::to_string(hp.n_expert_used) + " must be between 1 and " +
                   a + "expert_count = " + std::to_string(hp.n_expert));
        }
        // The expert width; older files only have feed_forward_length (split over the used experts, as llama.cpp).
        hp.n_ff_exp = f.find_int(a + "expert_feed_forward_length").value_or(hp.n_ff / hp.n_expert_used);
        if (hp.n_ff_exp < 1 || hp.n_ff_exp > (1 << 20)) f.fail("'" + a + "expert_feed_forward_length' is out of range");
    }

protected:
    void ffn_tensors(const TextHParams& hp, TextTensorTable& t) const override { add_moe_ffn_tensors(hp, t); }
};

}  // namespace

const TextFamily& qwen3vl_family() {
    static const Qwen3VLFamily f;
    return f;
}

const TextFamily& qwen3vlmoe_family() {
    static const Qwen3VLMoeFamily f;
    return f;
}

}  // namespace corehead
