// LLaMA-style decoders: LLaMA 1-3, Mistral, SmolLM2 (RMSNorm, RoPE, SwiGLU, GQA).
#include <cmath>

#include "text/family.h"

namespace corehead {

namespace {

class LlamaFamily final : public TextFamily {
public:
    const char* arch() const override { return "llama"; }
    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        add_embedding_tensors(hp, t, /*rope_freqs=*/true);
        add_attention_tensors(hp, t, /*biases=*/true, /*qkv_bias_required=*/false);
        add_ffn_tensors(hp, t);
    }
    // GGUF llama q/k weights are permuted by the converter for the "normal" RoPE layout.
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, /*rope_mode=*/0); }
};

}  // namespace

ggml_tensor* build_llama_like(DecoderGraph& g, int rope_mode) {
    const TextHParams& hp = g.hp;
    ggml_context* ctx = g.ctx;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
    ggml_tensor* x = g.input_embeddings();
    for (int64_t il = 0; il < hp.n_layer; ++il) {
        const LayerWeights& L = g.w.layers[il];
        ggml_tensor* h = g.rms_norm(x, L.attn_norm);
        ggml_tensor* q = ggml_reshape_3d(ctx, g.linear(h, L.wq, L.bq), hp.head_dim_k, hp.n_head, g.n_tokens);
        ggml_tensor* k = ggml_reshape_3d(ctx, g.linear(h, L.wk, L.bk), hp.head_dim_k, hp.n_head_kv, g.n_tokens);
        ggml_tensor* v = ggml_reshape_3d(ctx, g.linear(h, L.wv, L.bv), hp.head_dim_v, hp.n_head_kv, g.n_tokens);
        if (L.q_norm) q = g.rms_norm(q, L.q_norm);  // per-head QK-norm (qwen3), before RoPE
        if (L.k_norm) k = g.rms_norm(k, L.k_norm);
        q = g.rope(q, rope_mode, hp.rope_freq_base, hp.rope_scaling);
        k = g.rope(k, rope_mode, hp.rope_freq_base, hp.rope_scaling);
        ggml_tensor* a = g.attention(il, q, k, v, scale);
        if (il == hp.n_layer - 1) {  // only the output rows go on (see DecoderGraph::output_rows)
            a = g.output_rows(a);
            x = g.output_rows(x);
        }
        x = ggml_add(ctx, x, g.linear(a, L.wo, L.bo));
        ggml_tensor* h2 = g.rms_norm(x, L.ffn_norm);
        x = ggml_add(ctx, x, L.ffn_gate_inp ? g.ffn_moe(h2, L) : g.ffn_swiglu(h2, L));
        x = g.deepstack(il, x);  // a no-op without DeepStack features
    }
    return g.logits(x);
}

const TextFamily& llama_family() {
    static const LlamaFamily f;
    return f;
}

}  // namespace corehead
