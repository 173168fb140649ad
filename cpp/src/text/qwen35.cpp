// Qwen3.5 text decoders (`qwen35`): a hybrid. Three of every four layers are Gated DeltaNet
// (linear attention with a recurrent state, text/delta_net.cpp; no heads, no KV cache), the others
// full attention as Qwen3-VL's (QK-norm, interleaved M-RoPE over the first rope.dimension_count
// dims of each head) with an output gate: attn_q holds per head [query | gate], and the attention
// output is multiplied by sigmoid(gate) before attn_output. Every layer: pre-norm, mixer, residual,
// post_attention_norm, SwiGLU FFN, residual (docs/qwen35.md).
//
// Heads are the attention layers' heads only: taps, interventions, knockout and CoRe-sparse act on
// those layers; a head index naming a DeltaNet layer is refused (heads/head_index).
#include <cmath>
#include <string>

#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

int64_t positive_key(const GgufFile& f, const std::string& key, int64_t max) {
    const int64_t v = f.get_int(key);
    if (v <= 0 || v > max) f.fail("'" + key + "' = " + std::to_string(v) + " is out of range (1.." + std::to_string(max) + ")");
    return v;
}

class Qwen35Family : public TextFamily {
public:
    const char* arch() const override { return "qwen35"; }
    RopePositions positions() const override { return RopePositions::mrope; }

    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        const std::string a = hp.arch + ".";
        // Released files may carry multi-token-prediction blocks after the decoder layers
        // (block_count includes them): they are not part of the forward pass.
        const int64_t nextn = f.find_int(a + "nextn_predict_layers").value_or(0);
        if (nextn < 0 || nextn >= hp.n_layer) f.fail("'" + a + "nextn_predict_layers' is out of range");
        hp.n_nextn = nextn;
        hp.n_layer -= nextn;
        read_rope_sections(f, hp);
        hp.ssm_d_conv = positive_key(f, a + "ssm.conv_kernel", 64);
        hp.ssm_d_state = positive_key(f, a + "ssm.state_size", 4096);
        hp.ssm_n_group = positive_key(f, a + "ssm.group_count", 4096);
        hp.ssm_dt_rank = positive_key(f, a + "ssm.time_step_rank", 4096);
        hp.ssm_d_inner = positive_key(f, a + "ssm.inner_size", 1 << 20);
        if (hp.ssm_d_conv < 2) f.fail("'" + a + "ssm.conv_kernel' must be at least 2");
        if (hp.ssm_dt_rank % hp.ssm_n_group != 0) {
            f.fail("'" + a + "ssm.time_step_rank' (value heads, " + std::to_string(hp.ssm_dt_rank) +
                   ") is not a multiple of '" + a + "ssm.group_count' (key heads, " + std::to_string(hp.ssm_n_group) + ")");
        }
        if (hp.ssm_d_inner != hp.ssm_dt_rank * hp.ssm_d_state) {
            f.fail("'" + a + "ssm.inner_size' = " + std::to_string(hp.ssm_d_inner) +
                   " must be value heads x state size (the delta rule needs equal key and value head sizes)");
        }
        if (auto r = f.find_bool_array(a + "attention.recurrent_layers")) {
            if (static_cast<int64_t>(r->size()) < hp.n_layer) {
                f.fail("'" + a + "attention.recurrent_layers' has " + std::to_string(r->size()) + " entries for " +
                       std::to_string(hp.n_layer) + " layers");
            }
            hp.recurrent_layers.assign(r->begin(), r->begin() + hp.n_layer);
        } else {
            const int64_t interval = f.find_int(a + "full_attention_interval").value_or(4);
            if (interval < 1) f.fail("'" + a + "full_attention_interval' must be positive");
            hp.recurrent_layers.resize(hp.n_layer);
            for (int64_t l = 0; l < hp.n_layer; ++l) hp.recurrent_layers[l] = (l + 1) % interval != 0;
        }
        if (hp.attention_layers().empty()) f.fail("the model has no attention layer (every layer is recurrent)");
        if (hp.head_dim_k != hp.head_dim_v) f.fail("attention.key_length and value_length must be equal");
    }

    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        const int64_t E = hp.n_embd, hd = hp.head_dim_k, S = hp.ssm_d_state;
        add_embedding_tensors(hp, t, /*rope_freqs=*/false);
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            t.add_layer(l, "attn_norm.weight", {E}, &LayerWeights::attn_norm);
            t.add_layer(l, "post_attention_norm.weight", {E}, &LayerWeights::ffn_norm);
            if (hp.is_recurrent(l)) {
                t.add_layer(l, "attn_qkv.weight", {E, hp.ssm_conv_channels()}, &LayerWeights::wqkv);
                t.add_layer(l, "attn_gate.weight", {E, hp.ssm_d_inner}, &LayerWeights::wqkv_gate);
                t.add_layer(l, "ssm_conv1d.weight", {hp.ssm_d_conv, hp.ssm_conv_channels()}, &LayerWeights::ssm_conv1d);
                t.add_layer(l, "ssm_dt.bias", {hp.ssm_dt_rank}, &LayerWeights::ssm_dt);
                t.add_layer(l, "ssm_a", {hp.ssm_dt_rank}, &LayerWeights::ssm_a);
                t.add_layer(l, "ssm_beta.weight", {E, hp.ssm_dt_rank}, &LayerWeights::ssm_beta);
                t.add_layer(l, "ssm_alpha.weight", {E, hp.ssm_dt_rank}, &LayerWeights::ssm_alpha);
                t.add_layer(l, "ssm_norm.weight", {S}, &LayerWeights::ssm_norm);
                t.add_layer(l, "ssm_out.weight", {hp.ssm_d_inner, E}, &LayerWeights::ssm_out);
            } else {
                t.add_layer(l, "attn_q.weight", {E, 2 * hp.n_embd_q()}, &LayerWeights::wq);  // [query | gate] per head
                t.add_layer(l, "attn_k.weight", {E, hp.n_embd_k_gqa()}, &LayerWeights::wk);
                t.add_layer(l, "attn_v.weight", {E, hp.n_embd_v_gqa()}, &LayerWeights::wv);
                t.add_layer(l, "attn_output.weight", {hp.n_head * hp.head_dim_v, E}, &LayerWeights::wo);
                t.add_layer(l, "attn_q_norm.weight", {hd}, &LayerWeights::q_norm);
                t.add_layer(l, "attn_k_norm.weight", {hd}, &LayerWeights::k_norm);
            }
            ffn_tensors(hp, t, l);
        }
        // The multi-token-prediction blocks (not run): allowed, not loaded into a slot.
        static const char* const kMtp[] = {
            "attn_norm.weight", "post_attention_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
            "attn_output.weight", "attn_q_norm.weight", "attn_k_norm.weight", "ffn_gate.weight", "ffn_up.weight",
            "ffn_down.weight", "nextn.eh_proj.weight", "nextn.enorm.weight", "nextn.hnorm.weight",
            "nextn.embed_tokens.weight", "nextn.shared_head_head.weight", "nextn.shared_head_norm.weight"};
        for (int64_t l = hp.n_layer; l < hp.n_layer + hp.n_nextn; ++l) {
            for (const char* s : kMtp) t.allow("blk." + std::to_string(l) + "." + s);
        }
    }

    ggml_tensor* build(DecoderGraph& g) const override {
        const TextHParams& hp = g.hp;
        ggml_context* ctx = g.ctx;
        const int64_t hd = hp.head_dim_k, T = g.n_tokens;
        const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
        ggml_tensor* x = g.input_embeddings();
        for (int64_t il = 0; il < hp.n_layer; ++il) {
            const LayerWeights& L = g.w.layers[il];
            ggml_tensor* h = g.rms_norm(x, L.attn_norm);
            ggml_tensor* a = nullptr;
            if (hp.is_recurrent(il)) {
                a = g.delta_net(il, h);
            } else {
                ggml_tensor* qg = g.linear(h, L.wq);  // [2 * hd * n_head, T]: per head [query | gate]
                const size_t es = ggml_element_size(qg);
                ggml_tensor* q = ggml_view_3d(ctx, qg, hd, hp.n_head, T, 2 * hd * es, qg->nb[1], 0);
                ggml_tensor* gate = ggml_cont_2d(ctx, ggml_view_3d(ctx, qg, hd, hp.n_head, T, 2 * hd * es, qg->nb[1], hd * es),
                                                 hd * hp.n_head, T);
                ggml_tensor* k = ggml_reshape_3d(ctx, g.linear(h, L.wk), hd, hp.n_head_kv, T);
                ggml_tensor* v = ggml_reshape_3d(ctx, g.linear(h, L.wv), hd, hp.n_head_kv, T);
                q = g.rope(g.rms_norm(q, L.q_norm), GGML_ROPE_TYPE_IMROPE, hp.rope_freq_base, hp.rope_scaling);
                k = g.rope(g.rms_norm(k, L.k_norm), GGML_ROPE_TYPE_IMROPE, hp.rope_freq_base, hp.rope_scaling);
                a = g.attention(il, q, k, v, scale, gate);
                a = g.linear(a, L.wo);
            }
            if (il == hp.n_layer - 1) {  // only the output rows go on (see DecoderGraph::output_rows)
                a = g.output_rows(a);
                x = g.output_rows(x);
            }
            x = ggml_add(ctx, x, a);
            x = ggml_add(ctx, x, ffn(g, g.rms_norm(x, L.ffn_norm), L));
        }
        return g.logits(x);
    }

protected:
    virtual void ffn_tensors(const TextHParams& hp, TextTensorTable& t, int64_t l) const {
        t.add_layer(l, "ffn_gate.weight", {hp.n_embd, hp.n_ff}, &LayerWeights::ffn_gate);
        t.add_layer(l, "ffn_up.weight", {hp.n_embd, hp.n_ff}, &LayerWeights::ffn_up);
        t.add_layer(l, "ffn_down.weight", {hp.n_ff, hp.n_embd}, &LayerWeights::ffn_down);
    }
    virtual ggml_tensor* ffn(DecoderGraph& g, ggml_tensor* h, const LayerWeights& L) const { return g.ffn_swiglu(h, L); }
};

// Qwen3.5-MoE: every FFN is routed experts (softmax, top n_expert_used renormalized, as
// Qwen3-VL-MoE) plus a shared expert scaled by sigmoid(ffn_gate_inp_shexp · h).
class Qwen35MoeFamily final : public Qwen35Family {
public:
    const char* arch() const override { return "qwen35moe"; }
    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        Qwen35Family::read_hparams(f, hp);
        const std::string a = hp.arch + ".";
        hp.n_expert = positive_key(f, a + "expert_count", 4096);
        hp.n_expert_used = positive_key(f, a + "expert_used_count", 4096);
        if (hp.n_expert_used > hp.n_expert) {
            f.fail("'" + a + "expert_used_count' = " + std::to_string(hp.n_expert_used) + " exceeds '" + a +
                   "expert_count' = " + std::to_string(hp.n_expert));
        }
        hp.n_ff_exp = positive_key(f, a + "expert_feed_forward_length", 1 << 20);
        hp.n_ff_shexp = f.has(a + "expert_shared_feed_forward_length")
                            ? positive_key(f, a + "expert_shared_feed_forward_length", 1 << 20)
                            : hp.n_ff;
    }

protected:
    void ffn_tensors(const TextHParams& hp, TextTensorTable& t, int64_t l) const override {
        const int64_t E = hp.n_embd, X = hp.n_expert, F = hp.n_ff_exp, S = hp.n_ff_shexp;
        t.add_layer(l, "ffn_gate_inp.weight", {E, X}, &LayerWeights::ffn_gate_inp);
        t.add_layer(l, "ffn_gate_exps.weight", {E, F, X}, &LayerWeights::ffn_gate_exps);
        t.add_layer(l, "ffn_up_exps.weight", {E, F, X}, &LayerWeights::ffn_up_exps);
        t.add_layer(l, "ffn_down_exps.weight", {F, E, X}, &LayerWeights::ffn_down_exps);
        t.add_layer(l, "ffn_gate_inp_shexp.weight", {E}, &LayerWeights::ffn_gate_inp_shexp);
        t.add_layer(l, "ffn_gate_shexp.weight", {E, S}, &LayerWeights::ffn_gate_shexp);
        t.add_layer(l, "ffn_up_shexp.weight", {E, S}, &LayerWeights::ffn_up_shexp);
        t.add_layer(l, "ffn_down_shexp.weight", {S, E}, &LayerWeights::ffn_down_shexp);
    }
    ggml_tensor* ffn(DecoderGraph& g, ggml_tensor* h, const LayerWeights& L) const override {
        ggml_context* ctx = g.ctx;
        ggml_tensor* shared = ggml_mul_mat(ctx, L.ffn_down_shexp, ggml_swiglu_split(ctx, ggml_mul_mat(ctx, L.ffn_gate_shexp, h),
                                                                                 ggml_mul_mat(ctx, L.ffn_up_shexp, h)));
        ggml_tensor* gate = ggml_sigmoid(ctx, ggml_mul_mat(ctx, L.ffn_gate_inp_shexp, h));  // [1, n]
        return ggml_add(ctx, g.ffn_moe(h, L), ggml_mul(ctx, shared, gate));
    }
};

}  // namespace

const TextFamily& qwen35_family() {
    static const Qwen35Family f;
    return f;
}

const TextFamily& qwen35moe_family() {
    static const Qwen35MoeFamily f;
    return f;
}

}  // namespace corehead
