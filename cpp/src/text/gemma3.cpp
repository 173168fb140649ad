// Gemma 3 decoders: pre+post norms around attention and FFN, q/k RMS norms, GELU gating,
// embeddings scaled by sqrt(n_embd), and interleaved sliding-window layers.
#include <cmath>

#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Gemma3Family final : public TextFamily {
public:
    const char* arch() const override { return "gemma3"; }

    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        hp.n_swa = f.find_int("gemma3.attention.sliding_window").value_or(0);
        if (hp.n_swa < 0) f.fail("gemma3.attention.sliding_window must not be negative");
        hp.swa_layers.assign(hp.n_layer, false);
        if (hp.n_swa > 0) {
            // The converter writes no pattern; Gemma 3 uses 5 local layers then 1 global one.
            int64_t period = 6;
            if (auto p = f.find_int("gemma3.attention.sliding_window_pattern")) period = *p;
            if (period <= 0) f.fail("gemma3.attention.sliding_window_pattern must be positive");
            for (int64_t i = 0; i < hp.n_layer; ++i) hp.swa_layers[i] = (i + 1) % period != 0;
            hp.rope_freq_base_swa = f.find_float("gemma3.rope.freq_base_swa").value_or(10000.0f);
        }
    }

    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        const int64_t E = hp.n_embd;
        add_embedding_tensors(hp, t, /*rope_freqs=*/false);
        add_attention_tensors(hp, t, /*biases=*/false, false);
        t.add_layers("attn_q_norm.weight", {hp.head_dim_k}, &LayerWeights::q_norm);
        t.add_layers("attn_k_norm.weight", {hp.head_dim_k}, &LayerWeights::k_norm);
        t.add_layers("post_attention_norm.weight", {E}, &LayerWeights::attn_post_norm);
        add_ffn_tensors(hp, t);
        t.add_layers("post_ffw_norm.weight", {E}, &LayerWeights::ffn_post_norm);
    }

    ggml_tensor* build(DecoderGraph& g) const override {
        const TextHParams& hp = g.hp;
        ggml_context* ctx = g.ctx;
        // Token embeddings are scaled by sqrt(n_embd); image embeddings enter unscaled.
        ggml_tensor* x = g.input_embeddings(std::sqrt(static_cast<float>(hp.n_embd)));
        const float scale = 1.0f / std::sqrt(static_cast<float>(hp.head_dim_k));
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            const LayerWeights& L = g.w.layers[il];
            const bool swa = hp.is_swa(il);
            // Local layers use their own RoPE base and no scaling.
            const float base = swa ? hp.rope_freq_base_swa : hp.rope_freq_base;
            const RopeScaling scaling = swa ? RopeScaling{} : hp.rope_scaling;
            ggml_tensor* h = g.rms_norm(x, L.attn_norm);
            ggml_tensor* q = ggml_reshape_3d(ctx, g.linear(h, L.wq), hp.head_dim_k, hp.n_head, g.n_tokens);
            ggml_tensor* k = ggml_reshape_3d(ctx, g.linear(h, L.wk), hp.head_dim_k, hp.n_head_kv, g.n_tokens);
            ggml_tensor* v = ggml_reshape_3d(ctx, g.linear(h, L.wv), hp.head_dim_v, hp.n_head_kv, g.n_tokens);
            q = g.rope(g.rms_norm(q, L.q_norm), GGML_ROPE_TYPE_NEOX, base, scaling);
            k = g.rope(g.rms_norm(k, L.k_norm), GGML_ROPE_TYPE_NEOX, base, scaling);
            ggml_tensor* a = g.attention(il, q, k, v, scale);
            if (il == hp.n_layer - 1) {  // only the output rows go on (see DecoderGraph::output_rows)
                a = g.output_rows(a);
                x = g.output_rows(x);
            }
            x = ggml_add(ctx, x, g.rms_norm(g.linear(a, L.wo), L.attn_post_norm));
            ggml_tensor* f = g.ffn_geglu(g.rms_norm(x, L.ffn_norm), L);
            x = ggml_add(ctx, x, g.rms_norm(f, L.ffn_post_norm));
        }
        return g.logits(x);
    }
};

}  // namespace

const TextFamily& gemma3_family() {
    static const Gemma3Family f;
    return f;
}

}  // namespace corehead
