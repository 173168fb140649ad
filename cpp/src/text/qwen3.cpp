// Qwen3 decoders (the text model of InternVL 3.5 and Qwen3-VL's base): the LLaMA layout without
// q/k/v biases, with an RMSNorm over each query and key head (q_norm / k_norm, applied before
// RoPE, as transformers' Qwen3Attention) and NEOX-style RoPE; head_dim is its own key.
#include "text/family.h"

namespace corehead {

namespace {

class Qwen3Family final : public TextFamily {
public:
    const char* arch() const override { return "qwen3"; }
    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        add_embedding_tensors(hp, t, /*rope_freqs=*/false);
        add_attention_tensors(hp, t, /*biases=*/false, false);
        t.add_layers("attn_q_norm.weight", {hp.head_dim_k}, &LayerWeights::q_norm);
        t.add_layers("attn_k_norm.weight", {hp.head_dim_k}, &LayerWeights::k_norm);
        add_ffn_tensors(hp, t);
    }
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, GGML_ROPE_TYPE_NEOX); }
};

}  // namespace

const TextFamily& qwen3_family() {
    static const Qwen3Family f;
    return f;
}

}  // namespace corehead
