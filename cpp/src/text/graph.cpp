#include "text/graph.h"

#include <cmath>
#include <algorithm>
#include <limits>

#include "ggml-backend.h"
#include "runtime/kv_cache.h"
#include "runtime/sparse_kv.h"

namespace corehead {

DecoderGraph::DecoderGraph(ggml_context* c, ggml_cgraph* g, const TextHParams& h, const TextWeights& wt, const KVCache* k,
                           const SparseKVCache* sk, const DecoderBatch& b)
    : ctx(c), gf(g), hp(h), w(wt), kv(k), skv(sk), batch(b), n_tokens(b.n_tokens), n_kv(b.n_past + b.n_tokens) {}

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
    if (skv) return sparse_attention(layer, q, k, v, scale);
    ggml_build_forward_expand(gf, kv->store_k(ctx, layer, k, batch.n_past));
    ggml_build_forward_expand(gf, kv->store_v(ctx, layer, v, batch.n_past));
    ggml_tensor* K = kv->view_k(ctx, layer, n_kv);
    ggml_tensor* V = kv->view_v(ctx, layer, n_kv);
    ggml_tensor* Q = ggml_permute(ctx, q, 0, 2, 1, 3);  // [hd, n_tokens, n_head]
    if (batch.taps && batch.taps->taps(layer)) tap_attention(layer, q, K, scale);
    const bool knock = batch.interventions && batch.interventions->knocks(layer);
    ggml_tensor* m = knock ? knockout_mask(layer, false) : mask(hp.is_swa(layer));
    ggml_tensor* out = ggml_flash_attn_ext(ctx, Q, K, V, m, scale, 0.0f, 0.0f);
    ggml_prec_set_acc(out, GGML_PREC_F32);
    return intervene(layer, ggml_reshape_2d(ctx, out, hp.head_dim_v * hp.n_head, n_tokens));  // [hd*n_head, n_tokens]
}

ggml_tensor* DecoderGraph::knockout_mask(int64_t layer, bool taps) {
    const int64_t rows = taps ? static_cast<int64_t>(batch.taps->rows.size()) : n_tokens;
    // The main path's flash attention wants F16 masks; soft_max in the taps takes F32.
    ggml_tensor* m = ggml_new_tensor_3d(ctx, taps ? GGML_TYPE_F32 : GGML_TYPE_F16, n_kv, rows, hp.n_head);
    ggml_set_input(m);
    layer_inputs_.push_back({layer, m, taps ? 3 : 2});
    return m;
}

ggml_tensor* DecoderGraph::intervene(int64_t layer, ggml_tensor* out) {
    const HeadInterventions* iv = batch.interventions;
    const bool gate = iv && iv->gates(layer);
    if (!gate && !batch.head_sums) return out;
    ggml_tensor* o3 = ggml_reshape_3d(ctx, out, hp.head_dim_v, hp.n_head, n_tokens);
    if (batch.head_sums) {
        // Σ over tokens of each head's output: [hd, n_head, n_tok] -> [n_tok, hd, n_head] -> sum rows.
        ggml_tensor* s = ggml_sum_rows(ctx, ggml_cont(ctx, ggml_permute(ctx, o3, 1, 2, 0, 3)));
        ggml_set_output(s);
        ggml_build_forward_expand(gf, s);
        head_sum_outs_.push_back({layer, s});
    }
    if (!gate) return out;
    ggml_tensor* g = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 1, hp.n_head, 1);
    ggml_set_input(g);
    layer_inputs_.push_back({layer, g, 0});
    o3 = ggml_mul(ctx, o3, g);
    if (!iv->layers[layer].bias.empty()) {
        ggml_tensor* b = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hp.head_dim_v, hp.n_head, 1);
        ggml_set_input(b);
        layer_inputs_.push_back({layer, b, 1});
        o3 = ggml_add(ctx, o3, b);
    }
    return ggml_reshape_2d(ctx, o3, hp.head_dim_v * hp.n_head, n_tokens);
}

void DecoderGraph::tap_attention(int64_t layer, ggml_tensor* q, ggml_tensor* K, float scale) {
    const TapRequest& t = *batch.taps;
    const int64_t n_tap = static_cast<int64_t>(t.rows.size());
    const int64_t hd = q->ne[0], n_head = q->ne[1];
    if (!inp_tap_rows_) {
        inp_tap_rows_ = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tap);
        ggml_set_input(inp_tap_rows_);
    }
    ggml_tensor* tap_mask = nullptr;
    if (batch.interventions && batch.interventions->knocks(layer)) {
        tap_mask = knockout_mask(layer, true);  // the taps see what the knocked-out heads see
    } else {
        ggml_tensor*& shared = hp.is_swa(layer) ? inp_tap_mask_swa_ : inp_tap_mask_;
        if (!shared) {
            shared = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv, n_tap);
            ggml_set_input(shared);
        }
        tap_mask = shared;
    }
    // q rows of the tapped tokens: [hd, n_head, n_tokens] -> [hd, n_tap, n_head].
    ggml_tensor* qt = ggml_get_rows(ctx, ggml_reshape_2d(ctx, q, hd * n_head, n_tokens), inp_tap_rows_);
    qt = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, qt, hd, n_head, n_tap), 0, 2, 1, 3));
    // K [hd, n_kv, n_head_kv] broadcasts over the query heads of each KV group (GQA).
    ggml_tensor* p = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, K, qt), tap_mask, scale, 0.0f);  // [n_kv, n_tap, n_head]
    TapOut out{layer, nullptr, nullptr};
    if (t.full_rows) {
        out.rows = p;
        ggml_set_output(p);
        ggml_build_forward_expand(gf, p);
    }
    if (t.n_regions > 0) {
        if (!inp_relevance_) {
            inp_relevance_ = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv, t.n_regions);
            ggml_set_input(inp_relevance_);
        }
        out.masses = ggml_mul_mat(ctx, inp_relevance_, ggml_reshape_2d(ctx, p, n_kv, n_tap * n_head));
        ggml_set_output(out.masses);
        ggml_build_forward_expand(gf, out.masses);
    }
    tap_outs_.push_back(out);
}

void DecoderGraph::read_outputs() const {
    if (skv) read_sparse_outputs();
    if (batch.head_sums) {
        HeadOutputSums& hs = *batch.head_sums;
        hs.sums.resize(hp.n_layer);
        std::vector<float> tmp;
        for (const HeadSumOut& o : head_sum_outs_) {
            tmp.resize(ggml_nelements(o.sums));
            ggml_backend_tensor_get(o.sums, tmp.data(), 0, ggml_nbytes(o.sums));
            auto& acc = hs.sums[o.layer];
            acc.resize(tmp.size(), 0.0);
            for (size_t i = 0; i < tmp.size(); ++i) acc[i] += tmp[i];  // [hd, n_head]: head-major slices
        }
        hs.n_tokens += n_tokens;
    }
    if (!batch.tap_result) return;
    TapResult& r = *batch.tap_result;
    r.n_kv = n_kv;
    r.layers.clear();
    r.rows.clear();
    r.masses.clear();
    for (const TapOut& o : tap_outs_) {
        r.layers.push_back(static_cast<int32_t>(o.layer));
        r.rows.emplace_back(o.rows ? ggml_nelements(o.rows) : 0);
        if (o.rows) ggml_backend_tensor_get(o.rows, r.rows.back().data(), 0, ggml_nbytes(o.rows));
        r.masses.emplace_back(o.masses ? ggml_nelements(o.masses) : 0);
        if (o.masses) ggml_backend_tensor_get(o.masses, r.masses.back().data(), 0, ggml_nbytes(o.masses));
        // A row whose keys are all masked (a knocked-out head at a query that sees only visual
        // tokens) is 0/0 in softmax; flash attention gives such a head no output, so report no attention.
        for (auto* v : {&r.rows.back(), &r.masses.back()}) {
            for (float& x : *v) x = std::isfinite(x) ? x : 0.0f;
        }
    }
}

ggml_tensor* DecoderGraph::ffn_swiglu(ggml_tensor* x, const LayerWeights& L) {
    ggml_tensor* g = ggml_mul_mat(ctx, L.ffn_gate, x);
    ggml_tensor* u = ggml_mul_mat(ctx, L.ffn_up, x);
    return ggml_mul_mat(ctx, L.ffn_down, ggml_swiglu_split(ctx, g, u));
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
    if (!inp_out_rows_) {
        inp_out_rows_ = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_out);
        ggml_set_input(inp_out_rows_);
    }
    return ggml_get_rows(ctx, x, inp_out_rows_);
}

ggml_tensor* DecoderGraph::logits(ggml_tensor* x) {
    x = rms_norm(output_rows(x), w.output_norm);  // a no-op select when the last layer did it
    return ggml_mul_mat(ctx, w.output, x);
}

bool DecoderGraph::visible(int64_t row, int64_t key, bool swa) const {
    const int64_t qi = batch.n_past + row;  // cache index of the query
    const bool same_chunk = batch.bidirectional && key >= batch.n_past;
    if (key > qi && !same_chunk) return false;
    if (swa && qi - key >= hp.n_swa && !same_chunk) return false;
    return true;
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
            for (int64_t j = 0; j < n_kv; ++j) data[i * n_kv + j] = visible(i, j, swa) ? zero : neg_inf;
        }
        ggml_backend_tensor_set(m, data.data(), 0, data.size() * sizeof(ggml_fp16_t));
    }
    if (skv) set_sparse_inputs();
    for (const LayerInput& in : layer_inputs_) {
        const HeadInterventions::Layer& L = batch.interventions->layers[in.layer];
        if (in.kind == 0) {
            ggml_backend_tensor_set(in.tensor, L.gate.data(), 0, ggml_nbytes(in.tensor));
        } else if (in.kind == 1) {
            ggml_backend_tensor_set(in.tensor, L.bias.data(), 0, ggml_nbytes(in.tensor));
        } else {
            // Base visibility per row, then −inf on the knocked-out keys for the knocked-out heads.
            const bool taps = in.kind == 3;
            const bool swa = hp.is_swa(in.layer);
            const int64_t rows = in.tensor->ne[1];
            std::vector<float> m(static_cast<size_t>(n_kv * rows * hp.n_head));
            const float ninf = -std::numeric_limits<float>::infinity();
            for (int64_t h = 0; h < hp.n_head; ++h) {
                for (int64_t i = 0; i < rows; ++i) {
                    const int64_t row = taps ? batch.taps->rows[i] : i;
                    float* dst = m.data() + (h * rows + i) * n_kv;
                    for (int64_t j = 0; j < n_kv; ++j) dst[j] = visible(row, j, swa) ? 0.0f : ninf;
                    if (L.knockout[h]) {
                        const auto& keys = batch.interventions->knockout_keys;
                        const auto& from = batch.interventions->knockout_from;
                        const auto& until = batch.interventions->knockout_until;
                        const int64_t qi = batch.n_past + row;
                        for (size_t ki = 0; ki < keys.size(); ++ki) {
                            if (keys[ki] >= n_kv || (!from.empty() && qi < from[ki])) continue;
                            if (!until.empty() && qi >= until[ki]) continue;
                            dst[keys[ki]] = ninf;
                        }
                    }
                }
            }
            if (taps) {
                ggml_backend_tensor_set(in.tensor, m.data(), 0, m.size() * sizeof(float));
            } else {
                std::vector<ggml_fp16_t> m16(m.size());
                for (size_t i = 0; i < m.size(); ++i) m16[i] = ggml_fp32_to_fp16(m[i]);
                ggml_backend_tensor_set(in.tensor, m16.data(), 0, m16.size() * sizeof(ggml_fp16_t));
            }
        }
    }
    if (!batch.taps) return;
    const TapRequest& t = *batch.taps;
    if (inp_tap_rows_) ggml_backend_tensor_set(inp_tap_rows_, t.rows.data(), 0, ggml_nbytes(inp_tap_rows_));
    for (ggml_tensor* m : {inp_tap_mask_, inp_tap_mask_swa_}) {
        if (!m) continue;
        const bool swa = m == inp_tap_mask_swa_;
        std::vector<float> data(static_cast<size_t>(n_kv * t.rows.size()));
        for (size_t i = 0; i < t.rows.size(); ++i) {
            for (int64_t j = 0; j < n_kv; ++j) {
                data[i * n_kv + j] = visible(t.rows[i], j, swa) ? 0.0f : -std::numeric_limits<float>::infinity();
            }
        }
        ggml_backend_tensor_set(m, data.data(), 0, data.size() * sizeof(float));
    }
    if (inp_relevance_) {
        // W is laid out for n_kv_total keys; this batch sees the first n_kv of them.
        std::vector<float> w(static_cast<size_t>(n_kv * t.n_regions));
        for (int64_t r = 0; r < t.n_regions; ++r) {
            const float* src = t.relevance.data() + r * t.n_kv_total;
            std::copy(src, src + n_kv, w.begin() + r * n_kv);
        }
        ggml_backend_tensor_set(inp_relevance_, w.data(), 0, w.size() * sizeof(float));
    }
}

}  // namespace corehead
