// Gemma 4 decoders (transformers' Gemma4TextModel; llama.cpp's src/models/gemma4.cpp), dense FFN:
// - sliding-window and global layers given by a per-layer pattern, with their own head sizes,
//   RoPE bases and rotary dimensions; the global layers use "proportional" RoPE: only the first
//   pairs rotate (the converter's rope_freqs.weight holds ~1e30 for the others, i.e. angle 0);
// - q/k RMSNorms with weights, V RMS-normalized without weight, attention scale 1;
// - KV sharing: the last num_kv_shared_layers layers compute no K/V and attend over those of the
//   last earlier layer of the same kind (hp.kv_source; their queries, taps, ablation and knockout
//   stay their own); when a layer has no attn_v (attention_k_eq_v), V is its K projection;
// - per-layer embeddings (PLE): for every layer a small vector per token, from a token table and
//   from a projection of the input embedding, gates a residual branch after the FFN;
// - a scalar per layer on its output, and tanh softcapping of the logits.
#include <cmath>
#include <string>

#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Gemma4Family final : public TextFamily {
public:
    const char* arch() const override { return "gemma4"; }

    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        const std::string a = "gemma4.";
        if (f.find_int(a + "expert_count").value_or(0) > 0 || f.find_tensor("blk.0.ffn_gate_inp.weight")) {
            f.fail("Gemma 4 mixture-of-experts models (26B-A4B) are not supported yet; the dense ones (E2B, E4B, 31B) are");
        }
        const auto pattern = f.find_bool_array(a + "attention.sliding_window_pattern");
        if (!pattern || static_cast<int64_t>(pattern->size()) != hp.n_layer) {
            f.fail(a + "attention.sliding_window_pattern must hold one flag per layer (" + std::to_string(hp.n_layer) + ")");
        }
        hp.n_swa = f.find_int(a + "attention.sliding_window").value_or(0);
        if (hp.n_swa <= 0) f.fail(a + "attention.sliding_window must be positive");
        hp.swa_layers.assign(pattern->begin(), pattern->end());
        hp.rope_freq_base_swa = f.find_float(a + "rope.freq_base_swa").value_or(10000.0f);
        if (!(hp.rope_freq_base_swa > 0.0f)) f.fail(a + "rope.freq_base_swa must be positive");

        auto positive = [&](const std::string& key, int64_t fallback) {
            const int64_t v = f.find_int(a + key).value_or(fallback);
            if (v <= 0 || v > (1 << 16)) f.fail(a + key + " is out of range");
            return v;
        };
        hp.head_dim_k_swa = positive("attention.key_length_swa", hp.head_dim_k);
        hp.head_dim_v_swa = positive("attention.value_length_swa", hp.head_dim_v);
        hp.n_rot_swa = positive("rope.dimension_count_swa", hp.head_dim_k_swa);
        if (hp.n_rot_swa > hp.head_dim_k_swa || hp.n_rot_swa % 2 != 0) {
            f.fail(a + "rope.dimension_count_swa must be even and at most attention.key_length_swa");
        }

        // KV sharing: layers from n_layer - n_shared on read the K/V of the last earlier layer of
        // their kind (transformers' kv_sharing_modes "reuse" / "store").
        const int64_t n_shared = f.find_int(a + "attention.shared_kv_layers").value_or(0);
        if (n_shared < 0 || n_shared >= hp.n_layer) f.fail(a + "attention.shared_kv_layers is out of range");
        const int64_t first_shared = hp.n_layer - n_shared;
        hp.kv_source.resize(hp.n_layer);
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            hp.kv_source[l] = l;
            if (l < first_shared) continue;
            int64_t src = -1;
            for (int64_t j = first_shared - 1; j >= 0 && src < 0; --j) {
                if (hp.swa_layers[j] == hp.swa_layers[l]) src = j;
            }
            if (src < 0) f.fail("layer " + std::to_string(l) + " shares K/V, but no earlier layer of its kind has any");
            hp.kv_source[l] = src;
        }

        hp.n_embd_per_layer = f.find_int(a + "embedding_length_per_layer_input").value_or(0);
        if (hp.n_embd_per_layer < 0 || hp.n_embd_per_layer > (1 << 16)) {
            f.fail(a + "embedding_length_per_layer_input is out of range");
        }
        hp.pad_token_id = f.find_int("tokenizer.ggml.padding_token_id").value_or(0);
        if (hp.pad_token_id < 0 || hp.pad_token_id >= hp.n_vocab) f.fail("tokenizer.ggml.padding_token_id is out of range");
        hp.final_logit_softcap = f.find_float(a + "final_logit_softcapping").value_or(0.0f);
        if (hp.final_logit_softcap < 0.0f) f.fail(a + "final_logit_softcapping must not be negative");
    }

    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        const int64_t E = hp.n_embd, P = hp.n_embd_per_layer;
        add_embedding_tensors(hp, t, /*rope_freqs=*/false);
        bool any_global = false;
        for (int64_t l = 0; l < hp.n_layer; ++l) any_global = any_global || !hp.is_swa(l);
        if (any_global) t.add("rope_freqs.weight", {hp.n_rot / 2}, &TextWeights::rope_freqs);
        if (P > 0) {
            t.add("per_layer_token_embd.weight", {P * hp.n_layer, hp.n_vocab}, &TextWeights::ple_tok_embd);
            t.add("per_layer_model_proj.weight", {E, P * hp.n_layer}, &TextWeights::ple_model_proj);
            t.add("per_layer_proj_norm.weight", {P}, &TextWeights::ple_proj_norm);
        }
        t.add_layers("attn_norm.weight", {E}, &LayerWeights::attn_norm);
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            const int64_t hk = hp.head_k(l), hv = hp.head_v(l);
            t.add_layer(l, "attn_q.weight", {E, hk * hp.n_head}, &LayerWeights::wq);
            t.add_layer(l, "attn_q_norm.weight", {hk}, &LayerWeights::q_norm);
            t.add_layer(l, "attn_output.weight", {hv * hp.n_head, E}, &LayerWeights::wo);
            if (!hp.owns_kv(l)) continue;  // a sharing layer has no K/V weights
            t.add_layer(l, "attn_k.weight", {E, hk * hp.n_head_kv}, &LayerWeights::wk);
            t.add_layer(l, "attn_k_norm.weight", {hk}, &LayerWeights::k_norm);
            t.add_layer(l, "attn_v.weight", {E, hv * hp.n_head_kv}, &LayerWeights::wv, /*required=*/false);
        }
        t.add_layers("post_attention_norm.weight", {E}, &LayerWeights::attn_post_norm);
        t.add_layers("ffn_norm.weight", {E}, &LayerWeights::ffn_norm);
        for (int64_t l = 0; l < hp.n_layer; ++l) {  // use_double_wide_mlp: 2x wide in the sharing layers
            t.add_layer(l, "ffn_gate.weight", {E, hp.ff(l)}, &LayerWeights::ffn_gate);
            t.add_layer(l, "ffn_up.weight", {E, hp.ff(l)}, &LayerWeights::ffn_up);
            t.add_layer(l, "ffn_down.weight", {hp.ff(l), E}, &LayerWeights::ffn_down);
        }
        t.add_layers("post_ffw_norm.weight", {E}, &LayerWeights::ffn_post_norm);
        t.add_layers("layer_output_scale.weight", {1}, &LayerWeights::out_scale, /*required=*/false);
        if (P > 0) {
            t.add_layers("inp_gate.weight", {E, P}, &LayerWeights::ple_gate);
            t.add_layers("proj.weight", {P, E}, &LayerWeights::ple_proj);
            t.add_layers("post_norm.weight", {E}, &LayerWeights::ple_post_norm);
        }
    }

    ggml_tensor* build(DecoderGraph& g) const override {
        const TextHParams& hp = g.hp;
        ggml_context* ctx = g.ctx;
        // Token embeddings are scaled by sqrt(n_embd); image embeddings enter unscaled.
        ggml_tensor* x = g.input_embeddings(std::sqrt(static_cast<float>(hp.n_embd)));
        ggml_tensor* ple = hp.n_embd_per_layer > 0 ? per_layer_inputs(g, x) : nullptr;  // [P, n_tokens, n_layer]
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            const LayerWeights& L = g.w.layers[il];
            const bool swa = hp.is_swa(il);
            const int64_t hk = hp.head_k(il), hv = hp.head_v(il);
            const float base = swa ? hp.rope_freq_base_swa : hp.rope_freq_base;
            ggml_tensor* freq_factors = swa ? nullptr : g.w.rope_freqs;
            auto rope = [&](ggml_tensor* t) {
                return g.rope(t, GGML_ROPE_TYPE_NEOX, base, RopeScaling{}, hp.rot(il), freq_factors);
            };
            ggml_tensor* h = g.rms_norm(x, L.attn_norm);
            ggml_tensor* q = ggml_reshape_3d(ctx, g.linear(h, L.wq), hk, hp.n_head, g.n_tokens);
            q = rope(g.rms_norm(q, L.q_norm));
            ggml_tensor *k = nullptr, *v = nullptr;
            if (hp.owns_kv(il)) {
                ggml_tensor* kp = g.linear(h, L.wk);
                ggml_tensor* vp = L.wv ? g.linear(h, L.wv) : kp;  // attention_k_eq_v: V is the K projection
                k = rope(g.rms_norm(ggml_reshape_3d(ctx, kp, hk, hp.n_head_kv, g.n_tokens), L.k_norm));
                v = ggml_rms_norm(ctx, ggml_reshape_3d(ctx, vp, hv, hp.n_head_kv, g.n_tokens), hp.rms_eps);
            }
            ggml_tensor* a = g.attention(il, q, k, v, /*scale=*/1.0f);  // q and k are RMS-normed
            if (il == hp.n_layer - 1) {  // only the output rows go on (see DecoderGraph::output_rows)
                a = g.output_rows(a);
                x = g.output_rows(x);
            }
            x = ggml_add(ctx, x, g.rms_norm(g.linear(a, L.wo), L.attn_post_norm));
            ggml_tensor* f = g.ffn_geglu(g.rms_norm(x, L.ffn_norm), L);
            x = ggml_add(ctx, x, g.rms_norm(f, L.ffn_post_norm));
            if (ple) {
                ggml_tensor* pl = ggml_view_2d(ctx, ple, ple->ne[0], ple->ne[1], ple->nb[1], il * ple->nb[2]);
                if (x->ne[1] != g.n_tokens) pl = g.output_rows(pl);
                ggml_tensor* p = ggml_mul(ctx, g.gelu_tanh(g.linear(x, L.ple_gate)), pl);
                x = ggml_add(ctx, x, g.rms_norm(g.linear(p, L.ple_proj), L.ple_post_norm));
            }
            if (L.out_scale) x = ggml_mul(ctx, x, L.out_scale);
        }
        return g.logits(x);
    }

private:
    // transformers' get_per_layer_inputs + project_per_layer_inputs: (token table row ·
    // sqrt(n_ple) + RMSNorm(W · x / sqrt(n_embd))) / sqrt(2), per layer; visual rows take the
    // padding token's table row (transformers replaces image tokens by pad_token_id there).
    // Returns [n_ple, n_tokens, n_layer], each layer's slice contiguous.
    static ggml_tensor* per_layer_inputs(DecoderGraph& g, ggml_tensor* x) {
        const TextHParams& hp = g.hp;
        ggml_context* ctx = g.ctx;
        const int64_t P = hp.n_embd_per_layer, n = g.n_tokens;
        const DecoderBatch& b = g.batch;
        std::vector<int32_t> ids(static_cast<size_t>(n), static_cast<int32_t>(hp.pad_token_id));
        for (int64_t i = 0; i < n && !b.tokens.empty(); ++i) {
            if (b.is_token.empty() || b.is_token[i] != 0.0f) ids[i] = b.tokens[i];
        }
        ggml_tensor* tok = ggml_get_rows(ctx, g.w.ple_tok_embd, g.input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n),
                                                                          std::move(ids)));
        tok = ggml_scale(ctx, ggml_reshape_3d(ctx, tok, P, hp.n_layer, n), std::sqrt(static_cast<float>(P)));
        ggml_tensor* proj = ggml_scale(ctx, g.linear(x, g.w.ple_model_proj), 1.0f / std::sqrt(static_cast<float>(hp.n_embd)));
        proj = g.rms_norm(ggml_reshape_3d(ctx, proj, P, hp.n_layer, n), g.w.ple_proj_norm);
        ggml_tensor* both = ggml_scale(ctx, ggml_add(ctx, proj, tok), 1.0f / std::sqrt(2.0f));
        return ggml_cont(ctx, ggml_permute(ctx, both, 0, 2, 1, 3));  // [P, n_layer, n] -> [P, n, n_layer]
    }
};

}  // namespace

const TextFamily& gemma4_family() {
    static const Gemma4Family f;
    return f;
}

}  // namespace corehead
