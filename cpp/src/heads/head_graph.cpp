#include "heads/head_graph.h"

#include <algorithm>
#include <cmath>

#include "ggml-backend.h"
#include "text/graph.h"

namespace corehead {

HeadGraph::HeadGraph(DecoderGraph& g) : g_(g) {
    const HeadInterventions* iv = g.batch.interventions;
    if (!iv || iv->knockout_keys.empty()) return;
    // knockout_keys is ascending: index the run of each key once, for O(1) mask lookups.
    key_first_.assign(static_cast<size_t>(g.n_kv + 1), 0);
    for (int32_t k : iv->knockout_keys) {
        if (k < g.n_kv) ++key_first_[k + 1];
    }
    for (int64_t j = 0; j < g.n_kv; ++j) key_first_[j + 1] += key_first_[j];
}

bool HeadGraph::knocks(int64_t layer) const { return g_.batch.interventions && g_.batch.interventions->knocks(layer); }

bool HeadGraph::knocked_out(int64_t qi, int64_t key) const {
    const HeadInterventions& iv = *g_.batch.interventions;
    for (int32_t i = key_first_[key]; i < key_first_[key + 1]; ++i) {
        if (iv.knockout_from.empty() || (qi >= iv.knockout_from[i] && qi < iv.knockout_until[i])) return true;
    }
    return false;
}

ggml_tensor* HeadGraph::knockout_mask(int64_t layer, bool taps) {
    const DecoderBatch& b = g_.batch;
    const std::vector<uint8_t>& knocked = b.interventions->layers[layer].knockout;
    const bool swa = g_.hp.is_swa(layer);
    // Layers with the same knocked heads (and window kind) share one mask per graph; when every
    // head is knocked it is one [n_kv, rows, 1] plane broadcast over the heads, like the causal mask.
    for (const KnockoutMask& m : masks_) {
        if (m.swa == swa && m.taps == taps && *m.knocked == knocked) return m.mask;
    }
    const bool all = std::all_of(knocked.begin(), knocked.end(), [](uint8_t k) { return k != 0; });
    const int64_t rows = taps ? static_cast<int64_t>(b.taps->rows.size()) : g_.n_tokens;
    ggml_tensor* t = g_.mask(g_.n_kv, rows, all ? 1 : g_.hp.n_head, taps ? GGML_TYPE_F32 : GGML_TYPE_F16,
                             [this, &b, &knocked, swa, taps](int64_t h, int64_t r, int64_t key) {
                                 const int64_t row = taps ? b.taps->rows[r] : r;
                                 if (!g_.visible(row, key, swa)) return false;
                                 return !(knocked[h] && !key_first_.empty() && knocked_out(g_.query_index(row), g_.key_index(row, key)));
                             });
    masks_.push_back({&knocked, swa, taps, t});
    return t;
}

void HeadGraph::tap(int64_t layer, ggml_tensor* q, ggml_tensor* K, float scale) {
    const DecoderBatch& b = g_.batch;
    if (!b.taps || !b.taps->taps(layer)) return;
    ggml_context* ctx = g_.ctx;
    const TapRequest& t = *b.taps;
    const int64_t n_tap = static_cast<int64_t>(t.rows.size()), n_kv = g_.n_kv, n_tokens = g_.n_tokens;
    const int64_t hd = q->ne[0], n_head = q->ne[1];
    if (!tap_rows_) tap_rows_ = g_.input(ggml_new_tensor_1d(ctx, GGML_TYPE_I32, n_tap), t.rows.data());
    ggml_tensor* tap_mask = nullptr;
    if (knocks(layer)) {
        tap_mask = knockout_mask(layer, true);
    } else {
        const bool swa = g_.hp.is_swa(layer);
        tap_mask = g_.mask(n_kv, n_tap, 1, GGML_TYPE_F32,
                           [this, &t, swa](int64_t, int64_t r, int64_t key) { return g_.visible(t.rows[r], key, swa); },
                           swa ? "taps_swa" : "taps");
    }
    // q rows of the tapped tokens: [hd, n_head, n_tokens] -> [hd, n_tap, n_head].
    ggml_tensor* qt = ggml_get_rows(ctx, ggml_reshape_2d(ctx, q, hd * n_head, n_tokens), tap_rows_);
    qt = ggml_cont(ctx, ggml_permute(ctx, ggml_reshape_3d(ctx, qt, hd, n_head, n_tap), 0, 2, 1, 3));
    // K [hd, n_kv, n_head_kv] broadcasts over the query heads of each KV group (GQA).
    // F32 accumulation: GPU backends may otherwise round K·Q through f16 (the taps are the numbers
    // researchers read; the CPU computes them in f32 either way).
    ggml_tensor* kq = ggml_mul_mat(ctx, K, qt);
    ggml_mul_mat_set_prec(kq, GGML_PREC_F32);
    ggml_tensor* p = ggml_soft_max_ext(ctx, kq, tap_mask, scale, 0.0f);  // [n_kv, n_tap, n_head]
    TapOut out{layer, nullptr, nullptr};
    if (t.full_rows) {
        out.rows = p;
        g_.output(p);
    }
    if (t.n_regions > 0) {
        if (!relevance_) {
            // W is laid out for n_kv_total keys; this batch sees the first n_kv of them.
            std::vector<float> w(static_cast<size_t>(n_kv * t.n_regions));
            for (int64_t r = 0; r < t.n_regions; ++r) {
                const float* src = t.relevance.data() + r * t.n_kv_total;
                std::copy(src, src + n_kv, w.begin() + r * n_kv);
            }
            relevance_ = g_.input(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_kv, t.n_regions), std::move(w));
        }
        out.masses = ggml_mul_mat(ctx, relevance_, ggml_reshape_2d(ctx, p, n_kv, n_tap * n_head));
        g_.output(out.masses);
    }
    tap_outs_.push_back(out);
}

ggml_tensor* HeadGraph::on_output(int64_t layer, ggml_tensor* out) {
    const DecoderBatch& b = g_.batch;
    const HeadInterventions* iv = b.interventions;
    const bool gate = iv && iv->gates(layer);
    if (!gate && !b.head_sums) return out;
    ggml_context* ctx = g_.ctx;
    const int64_t hd = g_.hp.head_v(layer), n_head = g_.hp.n_head, n_tokens = g_.n_tokens;
    ggml_tensor* o3 = ggml_reshape_3d(ctx, out, hd, n_head, n_tokens);
    if (b.head_sums) {
        // Σ over tokens of each head's output: [hd, n_head, n_tok] -> [n_tok, hd, n_head] -> sum rows.
        ggml_tensor* s = ggml_sum_rows(ctx, ggml_cont(ctx, ggml_permute(ctx, o3, 1, 2, 0, 3)));
        g_.output(s);
        head_sum_outs_.push_back({layer, s});
    }
    if (!gate) return out;
    const HeadInterventions::Layer& L = iv->layers[layer];
    o3 = ggml_mul(ctx, o3, g_.input(ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 1, n_head, 1), L.gate.data()));
    if (!L.bias.empty()) o3 = ggml_add(ctx, o3, g_.input(ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hd, n_head, 1), L.bias.data()));
    return ggml_reshape_2d(ctx, o3, hd * n_head, n_tokens);
}

void HeadGraph::read_outputs() const {
    const DecoderBatch& b = g_.batch;
    if (b.head_sums) {
        HeadOutputSums& hs = *b.head_sums;
        hs.sums.resize(g_.hp.n_layer);
        std::vector<float> tmp;
        for (const HeadSumOut& o : head_sum_outs_) {
            tmp.resize(ggml_nelements(o.sums));
            ggml_backend_tensor_get(o.sums, tmp.data(), 0, ggml_nbytes(o.sums));
            auto& acc = hs.sums[o.layer];
            acc.resize(tmp.size(), 0.0);
            for (size_t i = 0; i < tmp.size(); ++i) acc[i] += tmp[i];  // [hd, n_head]: head-major slices
        }
        // Layers without heads (a hybrid model's recurrent ones) sum to zeros of the same width.
        for (auto& acc : hs.sums) {
            if (acc.empty()) acc.assign(static_cast<size_t>(g_.hp.n_head * g_.hp.head_dim_v), 0.0);
        }
        hs.n_tokens += g_.n_tokens;
    }
    if (!b.tap_result) return;
    TapResult& r = *b.tap_result;
    r.n_kv = g_.n_kv;
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

}  // namespace corehead
