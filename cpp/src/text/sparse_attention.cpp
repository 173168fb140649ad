// CoRe-sparse attention (docs/architecture.md §6) on the grouped cache of runtime/sparse_kv.h. Per layer the
// query heads of the CoRe KV heads attend over the full part (every token), the others over the
// compact part; each group's queries are gathered, and the two outputs are scattered back to the
// original head order before the output projection, so weights are used as stored. A layer whose
// KV heads are all CoRe runs exactly the dense graph (bit-identical outputs).
#include <algorithm>
#include <limits>

#include "ggml-backend.h"
#include "runtime/sparse_kv.h"
#include "text/graph.h"

namespace corehead {

namespace {
// Query rows at the end of the prompt whose attention picks the visual tokens a non-CoRe head
// keeps (SnapKV's observation window).
constexpr int64_t kObservationWindow = 16;
}  // namespace

ggml_tensor* DecoderGraph::gather(ggml_tensor* x, const std::vector<int32_t>& ids) {
    ggml_tensor* idx = nullptr;
    for (const IndexInput& in : index_inputs_) {
        if (in.ids == &ids) idx = in.tensor;
    }
    if (!idx) {
        idx = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, static_cast<int64_t>(ids.size()), n_tokens);
        ggml_set_input(idx);
        index_inputs_.push_back({idx, &ids});
    }
    return ggml_get_rows(ctx, x, idx);
}

ggml_tensor* DecoderGraph::sparse_attention(int64_t il, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale) {
    const SparseKVCache::Layer& L = skv->layer(il);
    const bool swa = hp.is_swa(il);
    const bool mixed = !L.core.empty() && !L.other.empty();
    ggml_tensor* outs[2] = {nullptr, nullptr};
    if (!L.core.empty()) {
        ggml_tensor* kk = mixed ? gather(k, L.core) : k;
        ggml_tensor* vv = mixed ? gather(v, L.core) : v;
        ggml_tensor* qq = mixed ? gather(q, L.q_core) : q;
        ggml_build_forward_expand(gf, skv->store(ctx, L.kf, kk, batch.n_past));
        ggml_build_forward_expand(gf, skv->store(ctx, L.vf, vv, batch.n_past));
        ggml_tensor* K = skv->view(ctx, L.kf, n_kv);
        ggml_tensor* V = skv->view(ctx, L.vf, n_kv);
        ggml_tensor* Q = ggml_permute(ctx, qq, 0, 2, 1, 3);  // [hd, n_tokens, n_q]
        ggml_tensor* o = ggml_flash_attn_ext(ctx, Q, K, V, mask(swa), scale, 0.0f, 0.0f);
        ggml_prec_set_acc(o, GGML_PREC_F32);
        outs[0] = o;  // [hd_v, n_q_core, n_tokens]
    }
    if (!L.other.empty()) {
        const int64_t n_kv_c = skv->n_compact() + n_tokens;
        ggml_tensor* kk = mixed ? gather(k, L.other) : k;
        ggml_tensor* vv = mixed ? gather(v, L.other) : v;
        ggml_tensor* qq = mixed ? gather(q, L.q_other) : q;
        ggml_build_forward_expand(gf, skv->store(ctx, L.kc, kk, skv->n_compact()));
        ggml_build_forward_expand(gf, skv->store(ctx, L.vc, vv, skv->n_compact()));
        ggml_tensor* K = skv->view(ctx, L.kc, n_kv_c);
        ggml_tensor* V = skv->view(ctx, L.vc, n_kv_c);
        ggml_tensor* Q = ggml_permute(ctx, qq, 0, 2, 1, 3);
        ggml_tensor* o = ggml_flash_attn_ext(ctx, Q, K, V, compact_mask(il, swa), scale, 0.0f, 0.0f);
        ggml_prec_set_acc(o, GGML_PREC_F32);
        if (batch.sparse_scores) sparse_scores(il, Q, K, scale, swa);
        outs[1] = o;  // [hd_v, n_q_other, n_tokens]
    }
    ggml_tensor* out = outs[0] ? outs[0] : outs[1];
    if (mixed) out = gather(ggml_concat(ctx, outs[0], outs[1], 1), L.q_inv);  // back to the original head order
    return intervene(il, ggml_reshape_2d(ctx, out, hp.head_dim_v * hp.n_head, n_tokens));
}

ggml_tensor* DecoderGraph::compact_mask(int64_t il, bool swa) {
    const int64_t n_kv_c = skv->n_compact() + n_tokens;
    if (skv->per_head_positions(il)) {
        // Budget tokens differ per head: a sliding window needs each head's own positions.
        const int64_t n_q = static_cast<int64_t>(skv->layer(il).q_other.size());
        ggml_tensor* m = ggml_new_tensor_3d(ctx, GGML_TYPE_F16, n_kv_c, n_tokens, n_q);
        ggml_set_input(m);
        layer_masks_c_.push_back({il, m});
        return m;
    }
    ggml_tensor*& m = swa ? inp_mask_c_swa_ : inp_mask_c_;
    if (!m) {
        m = ggml_new_tensor_2d(ctx, GGML_TYPE_F16, n_kv_c, n_tokens);
        ggml_set_input(m);
    }
    return m;
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

void DecoderGraph::sparse_scores(int64_t il, ggml_tensor* Q, ggml_tensor* K, float scale, bool swa) {
    // P = softmax over every compact key (visual ones included) of the last rows' queries, summed
    // over those rows and over each KV head's query heads: [n_kv_c, n_other].
    const int64_t W = std::min(kObservationWindow, n_tokens);
    n_score_rows_ = W;
    const int64_t n_kv_c = K->ne[1], n_other = K->ne[2], n_q = Q->ne[2];
    ggml_tensor* qw = ggml_cont(ctx, ggml_view_3d(ctx, Q, Q->ne[0], W, n_q, Q->nb[1], Q->nb[2], (n_tokens - W) * Q->nb[1]));
    ggml_tensor*& m = swa ? inp_score_mask_swa_ : inp_score_mask_;
    if (!m) {
        m = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv_c, W);
        ggml_set_input(m);
    }
    ggml_tensor* p = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, K, qw), m, scale, 0.0f);  // [n_kv_c, W, n_q]
    p = ggml_reshape_3d(ctx, p, n_kv_c, W * (n_q / n_other), n_other);
    ggml_tensor* s = ggml_sum_rows(ctx, ggml_cont(ctx, ggml_permute(ctx, p, 1, 0, 2, 3)));  // [1, n_kv_c, n_other]
    ggml_set_output(s);
    ggml_build_forward_expand(gf, s);
    score_outs_.push_back({il, s});
}

void DecoderGraph::set_sparse_inputs() const {
    const int64_t n_c = skv->n_compact();
    const int64_t n_kv_c = n_c + n_tokens;
    for (const IndexInput& in : index_inputs_) {
        const std::vector<int32_t>& ids = *in.ids;
        std::vector<int32_t> data;
        data.reserve(ids.size() * n_tokens);
        for (int64_t t = 0; t < n_tokens; ++t) data.insert(data.end(), ids.begin(), ids.end());
        ggml_backend_tensor_set(in.tensor, data.data(), 0, data.size() * sizeof(int32_t));
    }
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f);
    const ggml_fp16_t neg_inf = ggml_fp32_to_fp16(-std::numeric_limits<float>::infinity());
    for (ggml_tensor* m : {inp_mask_c_, inp_mask_c_swa_}) {
        if (!m) continue;
        const bool swa = m == inp_mask_c_swa_;
        std::vector<ggml_fp16_t> data(static_cast<size_t>(n_kv_c * n_tokens));
        for (int64_t i = 0; i < n_tokens; ++i) {
            for (int64_t j = 0; j < n_kv_c; ++j) {
                const int64_t pos = j < n_c ? skv->slot_pos(-1, 0, j) : 0;
                data[i * n_kv_c + j] = compact_visible(i, j, pos, swa) ? zero : neg_inf;
            }
        }
        ggml_backend_tensor_set(m, data.data(), 0, data.size() * sizeof(ggml_fp16_t));
    }
    for (const LayerMask& lm : layer_masks_c_) {
        const SparseKVCache::Layer& L = skv->layer(lm.layer);
        const int64_t n_q = static_cast<int64_t>(L.q_other.size());
        const int64_t g = hp.n_head / hp.n_head_kv;
        const bool swa = hp.is_swa(lm.layer);
        std::vector<ggml_fp16_t> data(static_cast<size_t>(n_kv_c * n_tokens * n_q));
        for (int64_t qh = 0; qh < n_q; ++qh) {
            for (int64_t i = 0; i < n_tokens; ++i) {
                ggml_fp16_t* dst = data.data() + (qh * n_tokens + i) * n_kv_c;
                for (int64_t j = 0; j < n_kv_c; ++j) {
                    const int64_t pos = j < n_c ? skv->slot_pos(lm.layer, qh / g, j) : 0;
                    dst[j] = compact_visible(i, j, pos, swa) ? zero : neg_inf;
                }
            }
        }
        ggml_backend_tensor_set(lm.tensor, data.data(), 0, data.size() * sizeof(ggml_fp16_t));
    }
    // SnapKV scores: the last rows see every key they could see densely (run ends ignored).
    const float ninf = -std::numeric_limits<float>::infinity();
    for (ggml_tensor* m : {inp_score_mask_, inp_score_mask_swa_}) {
        if (!m) continue;
        const bool swa = m == inp_score_mask_swa_;
        std::vector<float> data(static_cast<size_t>(n_kv_c * n_score_rows_));
        for (int64_t r = 0; r < n_score_rows_; ++r) {
            const int64_t row = n_tokens - n_score_rows_ + r;
            const int64_t qi = batch.n_past + row;
            for (int64_t j = 0; j < n_kv_c; ++j) {
                bool vis;
                if (j >= n_c) {
                    vis = visible(row, batch.n_past + (j - n_c), swa);
                } else {
                    const int64_t pos = skv->slot_pos(-1, 0, j);
                    vis = pos <= qi && !(swa && qi - pos >= hp.n_swa);
                }
                data[r * n_kv_c + j] = vis ? 0.0f : ninf;
            }
        }
        ggml_backend_tensor_set(m, data.data(), 0, data.size() * sizeof(float));
    }
}

void DecoderGraph::read_sparse_outputs() const {
    if (!batch.sparse_scores) return;
    auto& out = *batch.sparse_scores;
    out.assign(hp.n_layer, {});
    for (const ScoreOut& s : score_outs_) {
        out[s.layer].resize(ggml_nelements(s.scores));
        ggml_backend_tensor_get(s.scores, out[s.layer].data(), 0, ggml_nbytes(s.scores));
    }
}

}  // namespace corehead
