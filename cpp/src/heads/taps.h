// Attention taps (docs/architecture.md §4). The main path keeps flash attention, which never materializes
// probabilities; for a few tapped query rows a side branch recomputes
// P = softmax(K·q·scale + mask) over all keys, per layer and head, and optionally reduces it
// on the graph with a relevance matrix W [n_kv, n_regions], so only [n_regions, n_tap, n_head]
// masses travel to the host. Cost O(n_tap · n_kv · head_dim) per head.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "corehead/engine.h"

namespace corehead {

struct TapRequest {
    std::vector<int32_t> rows;     // batch rows (queries) to tap, ascending
    std::vector<bool> layers;      // layers[l]: tap layer l (empty = every layer)
    bool full_rows = false;        // return P rows over all keys
    int64_t n_regions = 0;         // > 0: return masses Σ_j W[j, r] · P[j]
    std::vector<float> relevance;  // W, row-major [n_regions][n_kv_total]: W[r * n_kv_total + j]
    int64_t n_kv_total = 0;        // key count W is laid out for (>= the batch's n_kv)

    bool taps(int64_t layer) const { return !rows.empty() && (layers.empty() || layers[layer]); }
};

// Per tapped layer (in layer order), ggml order (fastest index first):
// rows[l]:   [n_kv, n_tap, n_head]      masses[l]: [n_regions, n_tap, n_head]
struct TapResult {
    std::vector<int32_t> layers;
    int64_t n_kv = 0;
    std::vector<std::vector<float>> rows;
    std::vector<std::vector<float>> masses;
};

// The part of `req` that falls in a prefill chunk covering cache indices [base, base + len):
// rows re-based to the chunk. `first` is the index in req.rows of the chunk's first tapped row.
struct ChunkTaps {
    TapRequest request;
    size_t first = 0;
    bool any() const { return !request.rows.empty(); }
};
ChunkTaps chunk_taps(const TapRequest& req, int64_t base, int64_t len);

// The query positions a tap request for a prompt of n tokens returns: `positions` with negative
// values counted from the end (empty = the last token), sorted and de-duplicated. Throws InputError
// for a position outside the prompt.
std::vector<int32_t> tap_positions(int64_t n, const std::vector<int32_t>& positions);
// The layers a tap request returns, ascending (empty = all). Throws InputError for a bad layer.
// `recurrent` (hybrid models): layers without heads, left out of "every layer" and refused by name.
std::vector<int32_t> tap_layers(const std::vector<int32_t>& layers, int64_t n_layer,
                                const std::vector<bool>& recurrent = {});

// A user's tap request for a prompt of n tokens (validated here: positions, negative counting
// from the end; layers; the relevance matrix), and the result collected batch by batch.
class TapCollector {
public:
    TapCollector(int64_t n, const std::vector<int32_t>& positions, const std::vector<int32_t>& layers, bool full_rows,
                 const std::vector<float>& relevance, int64_t n_regions, int64_t n_layer, int64_t n_head,
                 const std::vector<bool>& recurrent = {});
    const TapRequest& request() const { return req_; }
    // Scatters one batch's taps ([n_kv_batch | n_regions, n_tap, n_head] per layer) into the result;
    // `first` is the index in request().rows of the batch's first tapped row.
    void add(size_t first, const TapResult& r);
    AttentionTaps take() { return std::move(out_); }

private:
    TapRequest req_;
    AttentionTaps out_;
};

}  // namespace corehead
