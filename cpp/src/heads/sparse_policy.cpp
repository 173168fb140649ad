#include "heads/sparse_policy.h"

#include <algorithm>
#include <string>

#include "corehead/error.h"
#include "heads/head_index.h"

namespace corehead {

SparseConfig make_sparse_config(const SparseOptions& o, const TextHParams& hp) {
    if (o.core_kv_heads.empty()) {
        throw InputError("the CoRe head set is empty: give at least one (layer, head), e.g. ranking.top(0.05)");
    }
    if (o.sink < 0) throw InputError("sink must be >= 0 (got " + std::to_string(o.sink) + ")");
    if (o.visual_budget < 0) throw InputError("visual_budget must be >= 0 (got " + std::to_string(o.visual_budget) + ")");
    SparseConfig c;
    c.core.assign(hp.n_layer, std::vector<uint8_t>(hp.n_head_kv, 0));
    for (const auto& [l, h] : o.core_kv_heads) {
        check_head_layer(l, hp.n_layer, hp.recurrent_layers);
        check_index("KV head", h, hp.n_head_kv);
        if (c.core[l][h]) throw InputError("KV head (" + std::to_string(l) + ", " + std::to_string(h) + ") is listed twice");
        c.core[l][h] = 1;
    }
    c.sink = o.sink;
    c.visual_budget = o.visual_budget;
    if (o.visual_keep == "snapkv") {
        c.keep = SparseConfig::Keep::snapkv;
    } else if (o.visual_keep == "first") {
        c.keep = SparseConfig::Keep::first;
    } else if (o.visual_keep == "last") {
        c.keep = SparseConfig::Keep::last;
    } else {
        throw InputError("visual_keep must be 'snapkv', 'first' or 'last' (got '" + o.visual_keep + "')");
    }
    return c;
}

std::vector<int32_t> choose_budget_tokens(std::vector<int32_t> cand, const float* scores, int64_t budget,
                                          SparseConfig::Keep keep) {
    const size_t b = std::min<size_t>(cand.size(), static_cast<size_t>(std::max<int64_t>(budget, 0)));
    if (keep == SparseConfig::Keep::last) std::reverse(cand.begin(), cand.end());
    if (keep == SparseConfig::Keep::snapkv) {
        std::stable_sort(cand.begin(), cand.end(), [scores](int32_t a, int32_t c) { return scores[a] > scores[c]; });
    }
    cand.resize(b);
    std::sort(cand.begin(), cand.end());
    return cand;
}

void throw_needs_dense_cache(const char* what) {
    throw InputError(std::string(what) +
                     " need the dense KV cache: run them outside the CoRe-sparse mode (leave `with eng.sparse(...)`, "
                     "or build the Engine without core_heads)");
}

}  // namespace corehead
