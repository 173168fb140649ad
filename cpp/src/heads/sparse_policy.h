// The CoRe-sparse policy (docs/architecture.md §6): which KV heads keep every token (the CoRe
// heads), how many leading tokens every head keeps (sinks), and which visual tokens a non-CoRe
// head keeps of every image (visual_budget, chosen SnapKV-style or by position). The storage
// that carries it out is runtime/sparse_kv.h.
#pragma once
#include <cstdint>
#include <vector>

#include "corehead/engine.h"
#include "text/hparams.h"

namespace corehead {

struct SparseConfig {
    std::vector<std::vector<uint8_t>> core;  // [n_layer][n_head_kv]: 1 = CoRe KV head
    int64_t sink = 4;                        // the first `sink` tokens of the sequence stay for every head
    int64_t visual_budget = 0;               // visual tokens each non-CoRe KV head keeps of every image
    enum class Keep { snapkv, first, last } keep = Keep::snapkv;  // which ones (SparseOptions::visual_keep)
};

// Validates the user's options against the model. Throws InputError naming what is wrong.
SparseConfig make_sparse_config(const SparseOptions& o, const TextHParams& hp);

// The visual_budget tokens one non-CoRe KV head keeps of one image: of `candidates` (compact
// slots, ascending), the `budget` with the largest `scores[slot]` (SnapKV: attention from the last
// prompt rows), or the first / last ones. Returns slots ascending.
std::vector<int32_t> choose_budget_tokens(std::vector<int32_t> candidates, const float* scores, int64_t budget,
                                          SparseConfig::Keep keep);

// The one message for the work that needs every key of every head in the cache.
[[noreturn]] void throw_needs_dense_cache(const char* what);

}  // namespace corehead
