#include "text/graph.h"

#include <cmath>
#include <limits>

#include "ggml-backend.h"
#include "runtime/kv_cache.h"

namespace corehead {

DecoderGraph::DecoderGraph(ggml_context* c, ggml_cgraph* g, const TextHParams& h, const TextWeights& wt, const KVCache& k,
                           const DecoderBatch& b)
    : ctx(c), gf(g), hp(h), w(wt), kv(k), batch(b), n_tokens(b.n_tokens), n_kv(b.n_past + b.n_tokens) {}

ggml_tensor* DecoderGraph::input_embeddings() {
    if (!batch.embeddings.empty()) {
        inp_embd_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.n_embd, n_tokens);
        ggml_set_input(inp_embd_);
        return inp_embd_;
    }
    inp_tokens_ = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tokens);
    ggml_set_input(inp_tokens_);
    return ggml_get_rows(ctx, w.tok_embd, inp_tokens_);
}

ggml_tensor* DecoderGraph::rms_norm(ggml_tensor* x, ggml_tensor* weight) {
    return ggml_mul(ctx, ggml_rms_norm(ctx, x, hp.rms_eps), weight);
}

ggml_tensor* DecoderGraph::linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias) {
    ggml_tensor* y = ggml_mul_mat(ctx, weight, x);
    return bias ? ggml_add(ctx, y, bias) : y;
}

ggml_tensor* DecoderGraph::rope(ggml_tensor* x, int mode, float freq_base, float freq_scale) {
    if (!inp_pos_) {
        const int64_t n = mode == GGML_ROPE_TYPE_MROPE ? 4 * n_tokens : n_tokens;
        inp_pos_ = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n);
        ggml_set_input(inp_pos_);
    }
    const int n_ctx_orig = static_cast<int>(hp.n_ctx_train);
    if (mode == GGML_ROPE_TYPE_MROPE) {
        int sections[4] = {hp.rope_sections[0], hp.rope_sections[1], hp.rope_sections[2], hp.rope_sections[3]};
        return ggml_rope_multi(ctx, x, inp_pos_, nullptr, static_cast<int>(hp.n_rot), sections, mode, n_ctx_orig,
                               freq_base, freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);
    }
    return ggml_rope_ext(ctx, x, inp_pos_, w.rope_freqs, static_cast<int>(hp.n_rot), mode, n_ctx_orig, freq_base,
                         freq_scale, 0.0f, 1.0f, 0.0f, 0.0f);
}

ggml_tensor* DecoderGraph::mask(bool swa) {
    ggml_tensor*& m = swa ? inp_mask_swa_ : inp_mask_;
    if (!m) {
        m = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, n_kv, n_tokens);
        ggml_set_input(m);
    }
    return m;
}

ggml_tensor* DecoderGraph::attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale) {
    ggml_build_forward_expand(gf, kv.store_k(ctx, layer, k, batch.n_past));
    ggml_build_forward_expand(gf, kv.store_v(ctx, layer, v, batch.n_past));
    ggml_tensor* K = kv.view_k(ctx, layer, n_kv);
    ggml_tensor* V = kv.view_v(ctx, layer, n_kv);
    ggml_tensor* Q = ggml_permute(ctx, q, 0, 2, 1, 3);  // [hd, n_tokens, n_head]
    ggml_tensor* out = ggml_flash_attn_ext(ctx, Q, K, V, mask(hp.is_swa(layer)), scale, 0.0f, 0.0f);
    ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
    return ggml_reshape_2d(ctx, out, hp.head_dim_v * hp.n_head, n_tokens);  // [hd*n_head, n_tokens]
}

ggml_tensor* DecoderGraph::ffn_swiglu(ggml_tensor* x, const LayerWeights& L) {
    ggml_tensor* g = ggml_mul_mat(ctx, L.ffn_gate, x);
    ggml_tensor* u = ggml_mul_mat(ctx, L.ffn_up, x);
    return ggml_mul_mat(ctx, L.ffn_down, ggml_swiglu_split(ctx, g, u));
}

ggml_tensor* DecoderGraph::ffn_geglu(ggml_tensor* x, const LayerWeights& L) {
    ggml_tensor* g = ggml_mul_mat(ctx, L.ffn_gate, x);
    ggml_tensor* u = ggml_mul_mat(ctx, L.ffn_up, x);
    return ggml_mul_mat(ctx, L.ffn_down, ggml_geglu_split(ctx, g, u));
}

ggml_tensor* DecoderGraph::logits(ggml_tensor* x) {
    const int64_t n_out = static_cast<int64_t>(batch.output_rows.size());
    if (n_out != n_tokens) {
        // Project only the rows whose logits are wanted (usually the last one).
        inp_out_rows_ = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_out);
        ggml_set_input(inp_out_rows_);
        x = ggml_get_rows(ctx, x, inp_out_rows_);
    }
    x = rms_norm(x, w.output_norm);
    return ggml_mul_mat(ctx, w.output, x);
}

void DecoderGraph::set_inputs() const {
    if (inp_tokens_) ggml_backend_tensor_set(inp_tokens_, batch.tokens.data(), 0, ggml_nbytes(inp_tokens_));
    if (inp_embd_) ggml_backend_tensor_set(inp_embd_, batch.embeddings.data(), 0, ggml_nbytes(inp_embd_));
    if (inp_pos_) ggml_backend_tensor_set(inp_pos_, batch.positions.data(), 0, ggml_nbytes(inp_pos_));
    if (inp_out_rows_) ggml_backend_tensor_set(inp_out_rows_, batch.output_rows.data(), 0, ggml_nbytes(inp_out_rows_));
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t neg_inf = ggml_fp32_to_fp16(-std::numeric_limits<float>::infinity());
    for (ggml_tensor* m : {inp_mask_, inp_mask_swa_}) {
        if (!m) continue;
        const bool swa = m == inp_mask_swa_;
        std::vector<ggml_fp16_t> data(static_cast<size_t>(n_kv * n_tokens));
        for (int64_t i = 0; i < n_tokens; ++i) {
            const int64_t qi = batch.n_past + i;  // cache index of the query
            for (int64_t j = 0; j < n_kv; ++j) {
                bool visible = j <= qi || (batch.bidirectional && j >= batch.n_past);
                if (swa && qi - j >= hp.n_swa && !(batch.bidirectional && j >= batch.n_past)) visible = false;
                data[i * n_kv + j] = visible ? zero : neg_inf;
            }
        }
        ggml_backend_tensor_set(m, data.data(), 0, data.size() * sizeof(ggml_fp16_t));
    }
}

}  // namespace corehead
