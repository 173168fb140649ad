#include "heads/interventions.h"

#include <algorithm>
#include <numeric>

#include "corehead/error.h"
#include "heads/head_index.h"

namespace corehead {

HeadInterventions compile_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                        const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until,
                                        const TextHParams& hp, int64_t n_ctx) {
    HeadInterventions iv;
    std::vector<std::vector<int>> seen(hp.n_layer, std::vector<int>(hp.n_head, 0));
    for (const HeadIntervention& h : list) {
        check_layer(h.layer, hp.n_layer);
        check_index("head", h.head, hp.n_head);
        if (seen[h.layer][h.head]++) {
            throw InputError("head (" + std::to_string(h.layer) + ", " + std::to_string(h.head) + ") is listed twice");
        }
        if (h.kind != "zero" && h.kind != "mean" && h.kind != "knockout") {
            throw InputError("unknown intervention '" + h.kind + "' (use 'zero', 'mean' or 'knockout')");
        }
        if (h.kind == "mean" && static_cast<int64_t>(h.mean.size()) != hp.head_dim_v) {
            throw InputError("a mean intervention needs head_dim = " + std::to_string(hp.head_dim_v) + " values");
        }
        if (iv.layers.empty()) iv.layers.resize(hp.n_layer);
        HeadInterventions::Layer& L = iv.layers[h.layer];
        if (h.kind == "knockout") {
            if (L.knockout.empty()) L.knockout.assign(hp.n_head, 0);
            L.knockout[h.head] = 1;
            continue;
        }
        if (L.gate.empty()) L.gate.assign(hp.n_head, 1.0f);
        L.gate[h.head] = 0.0f;
        if (h.kind == "mean") {
            if (L.bias.empty()) L.bias.assign(hp.n_head * hp.head_dim_v, 0.0f);
            std::copy(h.mean.begin(), h.mean.end(), L.bias.begin() + h.head * hp.head_dim_v);
        }
    }
    for (int32_t k : keys) {
        if (k < 0 || k >= n_ctx) throw InputError("knockout key position " + std::to_string(k) + " is out of range");
    }
    if (keys_from.size() != keys_until.size() || (!keys_from.empty() && keys_from.size() != keys.size())) {
        throw InputError("knockout_from and knockout_until must both hold one query position per knockout key");
    }
    std::vector<size_t> order(keys.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(), [&keys](size_t a, size_t b) { return keys[a] < keys[b]; });
    for (size_t i : order) {
        iv.knockout_keys.push_back(keys[i]);
        if (keys_from.empty()) continue;
        iv.knockout_from.push_back(keys_from[i]);
        iv.knockout_until.push_back(keys_until[i]);
    }
    return iv;
}

ScopedKnockoutKeys::ScopedKnockoutKeys(HeadInterventions& iv, std::vector<int32_t> keys)
    : iv_(iv), replace_(iv.knockout_from.empty()) {
    if (!replace_) return;
    saved_ = std::move(iv_.knockout_keys);
    iv_.knockout_keys = std::move(keys);
}

ScopedKnockoutKeys::~ScopedKnockoutKeys() {
    if (replace_) iv_.knockout_keys = std::move(saved_);
}

}  // namespace corehead
