#include "text/graph.h"

#include <cmath>
#include <algorithm>
#include <limits>

#include "ggml-backend.h"
#include "heads/head_graph.h"

namespace corehead {

DecoderGraph::DecoderGraph(ggml_context* c, ggml_cgraph* g, const TextHParams& h, const TextWeights& wt, const KVCache* k,
                           const SparseKVCache* sk, const DecoderBatch& b, const RecurrentState* r)
    : ctx(c), gf(g), hp(h), w(wt), kv(k), skv(sk), rs(r), batch(b), n_tokens(b.n_tokens), n_kv(b.n_past + b.n_tokens),
      heads_(std::make_unique<HeadGraph>(*this)) {}

DecoderGraph::~DecoderGraph() = default;

ggml_tensor* DecoderGraph::input_embeddings(float token_scale) {
    ggml_tensor* given = batch.embeddings.empty()
                             ? nullptr
                             : input(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_embd, n_tokens), batch.embeddings.data());
    if (given && batch.is_token.empty()) return given;
    ggml_tensor* tok = ggml_get_rows(ctx, w.tok_embd, input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tokens),
                                                            batch.tokens.data()));
    if (token_scale != 1.0f) tok = ggml_scale(ctx, tok, token_scale);
    if (!given) return tok;
    // Mixed batch: token rows masked in, image rows (zeros in `tok`'s place) added.
    ggml_tensor* keep = input(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, n_tokens), batch.is_token.data());
    return ggml_add(ctx, ggml_mul(ctx, tok, keep), given);
}

ggml_tensor* DecoderGraph::rms_norm(ggml_tensor* x, ggml_tensor* weight) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.rms_eps), weight);
}

ggml_tensor* DecoderGraph::linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias) {
    ggml_tensor* y = ggml_mul_mat(ctx, weight, x);
    return bias ? ggml_add(ctx, y, bias) : y;
}

ggml_tensor* DecoderGraph::rope(ggml_tensor* x, int mode, float freq_base, const RopeScaling& s) {
    return rope(x, mode, freq_base, s, hp.n_rot, w.rope_freqs);
}

ggml_tensor* DecoderGraph::rope(ggml_tensor* x, int mode, float freq_base, const RopeScaling& s, int64_t n_rot,
                                ggml_tensor* freq_factors) {
    const bool multi = mode == GGML_ROPE_TYPE_MROPE || mode == GGML_ROPE_TYPE_IMROPE;
    if (!inp_pos_ && mode == GGML_ROPE_TYPE_IMROPE) {
        // Interleaved M-RoPE gives the rotary pairs past 3 * section to the fourth position
        // section; transformers' interleaving leaves them temporal, so section 3 repeats section 0.
        std::vector<int32_t> pos(batch.positions);
        std::copy_n(pos.begin(), n_tokens, pos.begin() + 3 * n_tokens);
        inp_pos_ = input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, 4 * n_tokens), std::move(pos));
    } else if (!inp_pos_) {
        const int64_t n = multi ? 4 * n_tokens : n_tokens;
        inp_pos_ = input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n), batch.positions.data());
    }
    // n_ctx_orig, ext_factor, attn_factor and the betas only matter with YaRN (ext_factor != 0).
    const int n_ctx_orig = static_cast<int>(s.n_ctx_orig > 0 ? s.n_ctx_orig : hp.n_ctx_train);
    if (multi) {
        int sections[4] = {hp.rope_sections[0], hp.rope_sections[1], hp.rope_sections[2], hp.rope_sections[3]};
        return ggml_rope_multi(ctx, x, inp_pos_, nullptr, static_cast<int>(n_rot), sections, mode, n_ctx_orig,
                               freq_base, s.freq_scale, s.ext_factor, s.attn_factor, s.beta_fast, s.beta_slow);
    }
    return ggml_rope_ext(ctx, x, inp_pos_, freq_factors, static_cast<int>(n_rot), mode, n_ctx_orig, freq_base,
                         s.freq_scale, s.ext_factor, s.attn_factor, s.beta_fast, s.beta_slow);
}

ggml_tensor* DecoderGraph::ffn_swiglu(ggml_tensor* x, const LayerWeights& L) {
    ggml_tensor* g = ggml_mul_mat(ctx, L.ffn_gate, x);
    ggml_tensor* u = ggml_mul_mat(ctx, L.ffn_up, x);
    return ggml_mul_mat(ctx, L.ffn_down, ggml_swiglu_split(ctx, g, u));
}

ggml_tensor* DecoderGraph::ffn_moe(ggml_tensor* x, const LayerWeights& L) {
    const int64_t n_used = hp.n_expert_used, n = x->ne[1];
    // Router: softmax over every expert, the top n_used kept and renormalized (Qwen3-MoE).
    ggml_tensor* probs = ggml_soft_max(ctx, ggml_mul_mat(ctx, L.ffn_gate_inp, x));  // [n_expert, n]
    ggml_tensor* chosen = ggml_top_k(ctx, probs, static_cast<int>(n_used));         // [n_used, n] i32
    ggml_tensor* weights = ggml_get_rows(ctx, ggml_reshape_3d(ctx, probs, 1, hp.n_expert, n), chosen);  // [1, n_used, n]
    weights = ggml_reshape_2d(ctx, weights, n_used, n);
    weights = ggml_div(ctx, weights, ggml_sum_rows(ctx, weights));
    weights = ggml_reshape_3d(ctx, weights, 1, n_used, n);
    // Each token through its chosen experts only (mul_mat_id), then the weighted sum.
    ggml_tensor* xe = ggml_reshape_3d(ctx, x, x->ne[0], 1, n);
    ggml_tensor* g = ggml_mul_mat_id(ctx, L.ffn_gate_exps, xe, chosen);  // [n_ff_exp, n_used, n]
    ggml_tensor* u = ggml_mul_mat_id(ctx, L.ffn_up_exps, xe, chosen);
    ggml_tensor* y = ggml_mul_mat_id(ctx, L.ffn_down_exps, ggml_swiglu_split(ctx, g, u), chosen);  // [n_embd, n_used, n]
    y = ggml_mul(ctx, y, weights);
    ggml_tensor* out = ggml_view_2d(ctx, y, y->ne[0], n, y->nb[2], 0);
    for (int64_t k = 1; k < n_used; ++k) out = ggml_add(ctx, out, ggml_view_2d(ctx, y, y->ne[0], n, y->nb[2], k * y->nb[1]));
    return out;
}

ggml_tensor* DecoderGraph::deepstack(int64_t layer, ggml_tensor* x) {
    if (batch.deepstack.empty() || layer >= hp.n_deepstack) return x;
    if (!inp_deepstack_) {
        inp_deepstack_ = input(ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hp.n_embd, n_tokens, hp.n_deepstack),
                               batch.deepstack.data());
    }
    ggml_tensor* d = ggml_view_2d(ctx, inp_deepstack_, hp.n_embd, n_tokens, inp_deepstack_->nb[1],
                                  layer * inp_deepstack_->nb[2]);
    if (x->ne[1] != n_tokens) d = output_rows(d);  // after the last layer's row selection
    return ggml_add(ctx, x, d);
}

ggml_tensor* DecoderGraph::ffn_geglu(ggml_tensor* x, const LayerWeights& L) {
    ggml_tensor* g = ggml_mul_mat(ctx, L.ffn_gate, x);
    ggml_tensor* u = ggml_mul_mat(ctx, L.ffn_up, x);
    return ggml_mul_mat(ctx, L.ffn_down, ggml_mul(ctx, gelu_tanh(g), u));
}

ggml_tensor* DecoderGraph::gelu_tanh(ggml_tensor* x) {
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), from exact ops: ggml's CPU GELU reads an fp16
    // table, which put 3e-4 between our attention and transformers' after one Gemma layer.
    const float c = 0.7978845608028654f;  // √(2/π)
    ggml_tensor* x3 = ggml_mul(ctx, ggml_sqr(ctx, x), x);
    ggml_tensor* t = ggml_tanh(ctx, ggml_scale(ctx, ggml_add(ctx, x, ggml_scale(ctx, x3, 0.044715f)), c));
    return ggml_mul(ctx, x, ggml_scale_bias(ctx, t, 0.5f, 0.5f));
}

ggml_tensor* DecoderGraph::output_rows(ggml_tensor* x) {
    const int64_t n_out = static_cast<int64_t>(batch.output_rows.size());
    if (n_out == n_tokens || x->ne[1] == n_out) return x;  // every row wanted, or already selected
    if (!inp_out_rows_) inp_out_rows_ = input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_out), batch.output_rows.data());
    return ggml_get_rows(ctx, x, inp_out_rows_);
}

ggml_tensor* DecoderGraph::logits(ggml_tensor* x) {
    x = rms_norm(output_rows(x), w.output_norm);  // a no-op select when the last layer did it
    ggml_tensor* logits = ggml_mul_mat(ctx, w.output, x);
    if (hp.final_logit_softcap > 0.0f) {
        const float cap = hp.final_logit_softcap;
        logits = ggml_scale(ctx, ggml_tanh(ctx, ggml_scale(ctx, logits, 1.0f / cap)), cap);
    }
    return logits;
}

ggml_tensor* DecoderGraph::add_input(std::unique_ptr<GraphInput> in) {
    ggml_set_input(in->tensor);
    inputs_.push_back(std::move(in));
    return inputs_.back()->tensor;
}

ggml_tensor* DecoderGraph::find_shared_mask(const char* name) const {
    for (const auto& [n, t] : shared_masks_) {
        if (n == name) return t;
    }
    return nullptr;
}

ggml_tensor* DecoderGraph::new_mask(int64_t n_keys, int64_t n_rows, int64_t n_heads, ggml_type type, Visibility visible,
                                    const char* shared) {
    ggml_tensor* t = add_input(std::make_unique<MaskInput>(ggml_new_tensor_3d(ctx, type, n_keys, n_rows, n_heads),
                                                           std::move(visible)));
    if (shared) shared_masks_.emplace_back(shared, t);
    return t;
}

int64_t DecoderGraph::query_index(int64_t row) const {
    if (batch.branch_first.empty()) return batch.n_past + row;
    return batch.branch_prefix[row] + row - batch.branch_first[row];
}

int64_t DecoderGraph::key_index(int64_t row, int64_t key) const {
    if (batch.branch_first.empty() || key < batch.n_past) return key;
    return batch.branch_prefix[row] + (key - batch.n_past) - batch.branch_first[row];
}

bool DecoderGraph::visible(int64_t row, int64_t key, bool swa) const {
    if (!batch.branch_first.empty()) {
        // A cached key before the branch's prefix, or an earlier row of the same branch.
        if (key < batch.n_past) {
            if (key >= batch.branch_prefix[row]) return false;
        } else {
            const int64_t kr = key - batch.n_past;
            if (kr < batch.branch_first[row] || kr > row) return false;
        }
        return !(swa && query_index(row) - key_index(row, key) >= hp.n_swa);
    }
    const int64_t qi = batch.n_past + row;  // cache index of the query
    const bool same_chunk = batch.bidirectional && key >= batch.n_past;
    if (key > qi && !same_chunk) return false;
    if (swa && qi - key >= hp.n_swa && !same_chunk) return false;
    return true;
}

ggml_tensor* DecoderGraph::attend(ggml_tensor* Q, ggml_tensor* K, ggml_tensor* V, ggml_tensor* m, float scale) {
    ggml_tensor* out = ggml_flash_attn_ext(ctx, Q, K, V, m, scale, 0.0f, 0.0f);
    ggml_prec_set_acc(out, GGML_PREC_F32);
    return out;
}

void DecoderGraph::output(ggml_tensor* t) {
    ggml_set_output(t);
    ggml_build_forward_expand(gf, t);
}

void DecoderGraph::set_inputs() const {
    for (const auto& in : inputs_) in->set_input();
}

void DecoderGraph::read_outputs() const {
    read_sparse_scores();
    heads_->read_outputs();
}

}  // namespace corehead
