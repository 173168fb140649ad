// The one attention path of the decoder (docs/architecture.md §3, §6): K/V stored head-grouped
// (runtime/kv_cache.h), masks from DecoderGraph::mask, flash attention through
// DecoderGraph::attend, the head machinery (taps, interventions, head sums) through heads/.
//
// Dense: every query head over every visible key. CoRe-sparse (runtime/sparse_kv.h): per layer
// the query heads of the CoRe KV heads attend over the full part (every token), the others over
// the compact part; each group's queries are gathered, and the two outputs are scattered back to
// the original head order before the output projection, so weights are used as stored. A layer
// whose KV heads are all CoRe runs exactly the dense graph (bit-identical outputs).
#include <algorithm>

#include "ggml-backend.h"
#include "heads/head_graph.h"
#include "runtime/kv_cache.h"
#include "runtime/sparse_kv.h"
#include "text/graph.h"

namespace corehead {

namespace {
// Query rows at the end of the prompt whose attention picks the visual tokens a non-CoRe head
// keeps (SnapKV's observation window).
constexpr int64_t kObservationWindow = 16;
}  // namespace

ggml_tensor* DecoderGraph::attention_temperature(ggml_tensor* q) {
    if (hp.attn_temperature_scale == 0.0f) return q;
    if (!inp_attn_temp_) {
        // One input per graph, shared by every layer; the first n_tokens positions are the tokens'
        // own (M-RoPE's temporal section).
        inp_attn_temp_ = add_input(std::make_unique<AttentionTemperatureInput>(
            ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 1, 1, n_tokens), batch.positions.data(), hp.attn_temperature_scale,
            hp.attn_temperature_length));
    }
    return ggml_mul(ctx, q, inp_attn_temp_);
}

ggml_tensor* DecoderGraph::attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale,
                                     ggml_tensor* gate) {
    q = attention_temperature(q);
    ggml_tensor* out = skv ? sparse_attention(layer, q, k, v, scale) : dense_attention(layer, q, k, v, scale);
    out = ggml_reshape_2d(ctx, out, hp.head_v(layer) * hp.n_head, n_tokens);
    if (gate) out = ggml_mul(ctx, out, ggml_sigmoid(ctx, gate));
    return heads_->on_output(layer, out);
}

ggml_tensor* DecoderGraph::dense_attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale) {
    if (k) {  // a layer that shares another layer's K/V (k == nullptr) only reads them
        ggml_build_forward_expand(gf, kv_store(ctx, kv->k(layer), k, batch.n_past));
        ggml_build_forward_expand(gf, kv_store(ctx, kv->v(layer), v, batch.n_past));
    }
    ggml_tensor* K = kv_view(ctx, kv->k(layer), n_kv);
    ggml_tensor* V = kv_view(ctx, kv->v(layer), n_kv);
    heads_->tap(layer, q, K, scale);
    const bool swa = hp.is_swa(layer);
    ggml_tensor* m = heads_->knocks(layer)
                         ? heads_->knockout_mask(layer, false)
                         : mask(n_kv, n_tokens, 1, GGML_TYPE_F16,
                                [this, swa](int64_t, int64_t row, int64_t key) { return visible(row, key, swa); },
                                swa ? "causal_swa" : "causal");
    return attend(ggml_permute(ctx, q, 0, 2, 1, 3), K, V, m, scale);  // [hd_v, n_head, n_tokens]
}

ggml_tensor* DecoderGraph::gather(ggml_tensor* x, const std::vector<int32_t>& ids) {
    ggml_tensor* idx = nullptr;
    for (const auto& [list, t] : gather_ids_) {
        if (list == &ids) idx = t;
    }
    if (!idx) {
        std::vector<int32_t> data;  // the same ids for every token
        data.reserve(ids.size() * n_tokens);
        for (int64_t t = 0; t < n_tokens; ++t) data.insert(data.end(), ids.begin(), ids.end());
        idx = input(ggml_new_tensor_2d(ctx, GGML_TYPE_I32, static_cast<int64_t>(ids.size()), n_tokens), std::move(data));
        gather_ids_.emplace_back(&ids, idx);
    }
    return ggml_get_rows(ctx, x, idx);
}

ggml_tensor* DecoderGraph::sparse_attention(int64_t il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale) {
    const SparseKVCache::Layer& L = skv->layer(il);
    const bool swa = hp.is_swa(il);
    const bool mixed = !L.core.empty() && !L.other.empty();
    // One group of KV heads (with their query heads) over its own cache part from slot `first`.
    auto group = [&](const std::vector<int32_t>& kv_heads, const std::vector<int32_t>& q_heads, ggml_tensor* kc,
                     ggml_tensor* vc, int64_t first, ggml_tensor* m, bool scores) {
        if (k) {  // KV sharing: the source layer wrote this batch's K/V
            ggml_build_forward_expand(gf, kv_store(ctx, kc, mixed ? gather(k, kv_heads) : k, first));
            ggml_build_forward_expand(gf, kv_store(ctx, vc, mixed ? gather(v, kv_heads) : v, first));
        }
        ggml_tensor* K = kv_view(ctx, kc, first + n_tokens);
        ggml_tensor* V = kv_view(ctx, vc, first + n_tokens);
        ggml_tensor* Q = ggml_permute(ctx, mixed ? gather(q, q_heads) : q, 0, 2, 1, 3);  // [hd, n_tokens, n_q]
        if (scores) sparse_scores(il, Q, K, scale, swa);
        return attend(Q, K, V, m, scale);  // [hd_v, n_q, n_tokens]
    };
    ggml_tensor* outs[2] = {nullptr, nullptr};
    if (!L.core.empty()) {
        ggml_tensor* m = mask(n_kv, n_tokens, 1, GGML_TYPE_F16,
                              [this, swa](int64_t, int64_t row, int64_t key) { return visible(row, key, swa); },
                              swa ? "causal_swa" : "causal");
        outs[0] = group(L.core, L.q_core, L.kf, L.vf, batch.n_past, m, false);
    }
    if (!L.other.empty()) {
        // SnapKV scores come from the layer that owns the K/V (a shared KV head keeps one token set).
        outs[1] = group(L.other, L.q_other, L.kc, L.vc, skv->n_compact(), compact_mask(il, swa),
                        batch.sparse_scores && k);
    }
    ggml_tensor* out = outs[0] ? outs[0] : outs[1];
    if (mixed) out = gather(ggml_concat(ctx, outs[0], outs[1], 1), L.q_inv);  // back to the original head order
    return out;
}

bool DecoderGraph::compact_visible(int64_t row, int64_t j, int64_t pos, bool swa) const {
    const int64_t qi = batch.n_past + row;
    const int64_t n_c = skv->n_compact();
    if (j >= n_c) {  // a token of this batch
        const int64_t key = batch.n_past + (j - n_c);
        return visible(row, key, swa) && qi < skv->until_of(key);
    }
    if (pos > qi) return false;
    if (swa && qi - pos >= hp.n_swa) return false;
    return qi < skv->slot_until(j);
}

ggml_tensor* DecoderGraph::compact_mask(int64_t il, bool swa) {
    const int64_t n_c = skv->n_compact(), n_kv_c = n_c + n_tokens;
    if (skv->per_head_positions(il)) {
        // Budget tokens differ per head: a sliding window needs each head's own positions.
        const int64_t n_q = static_cast<int64_t>(skv->layer(il).q_other.size());
        const int64_t g = hp.n_head / hp.n_head_kv;
        return mask(n_kv_c, n_tokens, n_q, GGML_TYPE_F16, [this, il, n_c, g, swa](int64_t qh, int64_t row, int64_t j) {
            return compact_visible(row, j, j < n_c ? skv->slot_pos(il, qh / g, j) : 0, swa);
        });
    }
    return mask(n_kv_c, n_tokens, 1, GGML_TYPE_F16, [this, n_c, swa](int64_t, int64_t row, int64_t j) {
        return compact_visible(row, j, j < n_c ? skv->slot_pos(-1, 0, j) : 0, swa);
    }, swa ? "compact_swa" : "compact");
}

void DecoderGraph::sparse_scores(int64_t il, ggml_tensor* Q, ggml_tensor* K, float scale, bool swa) {
    // P = softmax over every compact key (visual ones included) of the last rows' queries, summed
    // over those rows and over each KV head's query heads: [n_kv_c, n_other].
    const int64_t W = std::min(kObservationWindow, n_tokens);
    const int64_t n_kv_c = K->ne[1], n_other = K->ne[2], n_q = Q->ne[2], n_c = skv->n_compact();
    ggml_tensor* qw = ggml_cont(ctx, ggml_view_3d(ctx, Q, Q->ne[0], W, n_q, Q->nb[1], Q->nb[2], (n_tokens - W) * Q->nb[1]));
    // The last rows see every key they could see densely (run ends ignored).
    ggml_tensor* m = mask(n_kv_c, W, 1, GGML_TYPE_F32, [this, W, n_c, swa](int64_t, int64_t r, int64_t j) {
        const int64_t row = n_tokens - W + r;
        if (j >= n_c) return visible(row, batch.n_past + (j - n_c), swa);
        const int64_t qi = batch.n_past + row, pos = skv->slot_pos(-1, 0, j);
        return pos <= qi && !(swa && qi - pos >= hp.n_swa);
    }, swa ? "scores_swa" : "scores");
    ggml_tensor* kq = ggml_mul_mat(ctx, K, qw);
    ggml_mul_mat_set_prec(kq, GGML_PREC_F32);  // as the taps: no f16 rounding on GPU backends
    ggml_tensor* p = ggml_soft_max_ext(ctx, kq, m, scale, 0.0f);  // [n_kv_c, W, n_q]
    p = ggml_reshape_3d(ctx, p, n_kv_c, W * (n_q / n_other), n_other);
    ggml_tensor* s = ggml_sum_rows(ctx, ggml_cont(ctx, ggml_permute(ctx, p, 1, 0, 2, 3)));  // [1, n_kv_c, n_other]
    output(s);
    score_outs_.emplace_back(il, s);
}

void DecoderGraph::read_sparse_scores() const {
    if (!skv || !batch.sparse_scores) return;
    auto& out = *batch.sparse_scores;
    out.assign(hp.n_layer, {});
    for (const auto& [layer, s] : score_outs_) {
        out[layer].resize(ggml_nelements(s));
        ggml_backend_tensor_get(s, out[layer].data(), 0, ggml_nbytes(s));
    }
}

}  // namespace corehead
