// The head machinery inside one decoder graph (docs/architecture.md §4-5): attention taps on a
// side branch, interventions compiled to graph inputs (gates and means on a head's output,
// knockout masks), and per-head output sums. DecoderGraph's attention calls it per layer; a layer
// without taps or interventions gets exactly the graph it would have without them.
#pragma once
#include <cstdint>
#include <vector>

#include "ggml.h"

namespace corehead {

class DecoderGraph;

class HeadGraph {
public:
    explicit HeadGraph(DecoderGraph& g);

    bool knocks(int64_t layer) const;
    // The mask of a layer with knocked-out heads, [n_kv, rows, n_head]: the layer's visibility,
    // and −inf on the knocked-out keys for those heads. Main path (F16, every batch row) or taps
    // (F32, the tapped rows): the taps see what the knocked-out heads see. Built once per graph
    // for each distinct set of knocked heads.
    ggml_tensor* knockout_mask(int64_t layer, bool taps);
    // Taps of `layer` when requested: P = softmax(K·q·scale + mask) for the tapped rows over all
    // keys, kept whole and/or reduced by the relevance matrix on the graph.
    void tap(int64_t layer, ggml_tensor* q, ggml_tensor* K, float scale);
    // Gates / means on the attention output [hd*n_head, n_tokens] and the head sums.
    ggml_tensor* on_output(int64_t layer, ggml_tensor* out);
    // Copies taps and head sums to the batch's results, once the graph has been computed.
    void read_outputs() const;

private:
    // Whether the query at cache index qi may not see key `key` (knockout_keys and their ranges).
    bool knocked_out(int64_t qi, int64_t key) const;

    DecoderGraph& g_;
    std::vector<int32_t> key_first_;  // [n_kv + 1]: knockout_keys[key_first_[j] .. key_first_[j+1]) == j
    struct KnockoutMask {
        const std::vector<uint8_t>* knocked;  // the layer's knocked heads
        bool swa, taps;
        ggml_tensor* mask;
    };
    std::vector<KnockoutMask> masks_;
    ggml_tensor* tap_rows_ = nullptr;
    ggml_tensor* relevance_ = nullptr;
    struct TapOut {
        int64_t layer;
        ggml_tensor* rows;
        ggml_tensor* masses;
    };
    std::vector<TapOut> tap_outs_;
    struct HeadSumOut {
        int64_t layer;
        ggml_tensor* sums;
    };
    std::vector<HeadSumOut> head_sum_outs_;
};

}  // namespace corehead
