#include "heads/interventions.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include "corehead/error.h"
#include "heads/head_index.h"

namespace corehead {

HeadInterventions compile_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                        const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until,
                                        const std::string& queries, const TextHParams& hp, int64_t n_ctx) {
    if (queries != "after" && queries != "all") {
        throw InputError("knockout queries must be 'after' (the queries after the image) or 'all' (got '" + queries + "')");
    }
    HeadInterventions iv;
    iv.all_queries = queries == "all";
    std::vector<std::vector<int>> seen(hp.n_layer, std::vector<int>(hp.n_head, 0));
    for (const HeadIntervention& h : list) {
        check_head_layer(h.layer, hp.n_layer, hp.recurrent_layers);
        check_index("head", h.head, hp.n_head);
        if (seen[h.layer][h.head]++) {
            throw InputError("head (" + std::to_string(h.layer) + ", " + std::to_string(h.head) + ") is listed twice");
        }
        if (h.kind != "zero" && h.kind != "mean" && h.kind != "knockout") {
            throw InputError("unknown intervention '" + h.kind + "' (use 'zero', 'mean' or 'knockout')");
        }
        if (h.kind == "mean" && static_cast<int64_t>(h.mean.size()) != hp.head_v(h.layer)) {
            throw InputError("a mean intervention on layer " + std::to_string(h.layer) + " needs head_dim = " +
                             std::to_string(hp.head_v(h.layer)) + " values");
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
            if (L.bias.empty()) L.bias.assign(hp.n_head * hp.head_v(h.layer), 0.0f);
            std::copy(h.mean.begin(), h.mean.end(), L.bias.begin() + h.head * hp.head_v(h.layer));
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
        iv.user_keys.push_back(keys[i]);
        if (keys_from.empty()) continue;
        iv.user_from.push_back(keys_from[i]);
        iv.user_until.push_back(keys_until[i]);
    }
    activate_knockout(iv, {});
    return iv;
}

namespace {

std::string deltanet_layer_list(const TextHParams& hp) {
    std::string s;
    for (int64_t l = 0; l < hp.n_layer; ++l) {
        if (hp.is_recurrent(l)) s += (s.empty() ? "" : ", ") + std::to_string(l);
    }
    return s;
}

}  // namespace

std::vector<std::vector<float>> compile_deltanet_ablation(const std::vector<std::pair<int32_t, int32_t>>& value_heads,
                                                          const TextHParams& hp) {
    std::vector<std::vector<float>> gates;
    if (value_heads.empty()) return gates;
    if (!hp.has_recurrent()) {
        throw InputError("this model ('" + hp.arch + "') has no Gated DeltaNet layers: DeltaNet value-head ablation "
                         "needs a hybrid model (qwen35, qwen35moe); ablate attention heads with Engine.ablated");
    }
    const int64_t n_v = hp.ssm_dt_rank, n_k = hp.ssm_n_group, per_k = n_v / n_k;
    const std::string valid = "this model's Gated DeltaNet layers are " + deltanet_layer_list(hp) +
                              ", each with value heads 0.." + std::to_string(n_v - 1);
    gates.resize(hp.n_layer);
    for (const auto& [layer, head] : value_heads) {
        const std::string pair = "(" + std::to_string(layer) + ", " + std::to_string(head) + ")";
        if (layer < 0 || layer >= hp.n_layer) {
            throw InputError("DeltaNet value head " + pair + ": layer " + std::to_string(layer) + " is out of range; " + valid);
        }
        if (!hp.is_recurrent(layer)) {
            throw InputError("DeltaNet value head " + pair + ": layer " + std::to_string(layer) +
                             " is a full-attention layer (ablate its heads with Engine.ablated); " + valid);
        }
        if (head < 0 || head >= n_v) {
            throw InputError("DeltaNet value head " + pair + ": value head " + std::to_string(head) + " is out of range; " + valid);
        }
        std::vector<float>& g = gates[layer];
        if (g.empty()) g.assign(n_v, 1.0f);
        const int64_t file_head = (head % per_k) * n_k + head / per_k;  // transformers' grouped order -> tiled
        if (g[file_head] == 0.0f) throw InputError("DeltaNet value head " + pair + " is listed twice");
        g[file_head] = 0.0f;
    }
    return gates;
}

void set_value_gates(HeadInterventions& iv, const std::vector<std::vector<float>>& gates) {
    for (HeadInterventions::Layer& L : iv.layers) L.value_gate.clear();
    for (size_t l = 0; l < gates.size(); ++l) {
        if (gates[l].empty()) continue;
        if (iv.layers.size() < gates.size()) iv.layers.resize(gates.size());
        iv.layers[l].value_gate = gates[l];
    }
    // Nothing left in force: back to "no interventions at all".
    const bool none = std::all_of(iv.layers.begin(), iv.layers.end(), [](const HeadInterventions::Layer& L) {
        return L.gate.empty() && L.bias.empty() && L.knockout.empty() && L.value_gate.empty();
    });
    if (none) iv.layers.clear();
}

void activate_knockout(HeadInterventions& iv, const std::vector<std::vector<int32_t>>& images) {
    iv.knockout_keys.clear();
    iv.knockout_from.clear();
    iv.knockout_until.clear();
    if (!iv.any_knockout()) return;
    if (images.empty() || !iv.user_from.empty()) {
        iv.knockout_keys = iv.user_keys;
        iv.knockout_from = iv.user_from;
        iv.knockout_until = iv.user_until;
        return;
    }
    // Each image's span [first, end) in the cache; images come in prompt order, spans disjoint.
    std::vector<std::pair<int32_t, int32_t>> span;
    for (const std::vector<int32_t>& pos : images) {
        if (pos.empty()) {
            span.emplace_back(0, 0);
            continue;
        }
        const auto [lo, hi] = std::minmax_element(pos.begin(), pos.end());
        span.emplace_back(*lo, *hi + 1);
    }
    constexpr int32_t kNever = std::numeric_limits<int32_t>::max();
    for (size_t i = 0; i < images.size(); ++i) {
        std::vector<int32_t> keys = images[i];
        std::sort(keys.begin(), keys.end());
        for (int32_t k : keys) {
            if (iv.all_queries) {
                iv.knockout_keys.push_back(k);
                continue;
            }
            // The gaps between this image's end and the later images, then everything after the last.
            for (size_t j = i; j < images.size(); ++j) {
                const int32_t from = span[j].second;
                const int32_t until = j + 1 < images.size() ? span[j + 1].first : kNever;
                if (from >= until) continue;
                iv.knockout_keys.push_back(k);
                iv.knockout_from.push_back(from);
                iv.knockout_until.push_back(until);
            }
        }
    }
}

}  // namespace corehead
