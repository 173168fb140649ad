// The state of a hybrid model's recurrent (Gated DeltaNet) layers for one sequence: what the KV
// cache is to attention layers. Per recurrent layer: the last ssm_d_conv - 1 inputs of the causal
// convolution, [ssm_d_conv - 1, conv channels], and the delta-rule memory, one
// [ssm_d_state, ssm_d_state] matrix per value head, [S, S, value heads]; both f32 (docs/qwen35.md).
//
// Unlike the KV cache, the state after token n overwrites the state after token n - 1: it can be
// cleared (a new sequence) but not rewound, so TextContext::truncate refuses to move back.
#pragma once
#include <cstdint>
#include <vector>

#include "runtime/kv_cache.h"
#include "text/hparams.h"

namespace corehead {

class RecurrentState {
public:
    RecurrentState(const TextHParams& hp, ggml_backend_t backend);

    // nullptr for an attention layer.
    ggml_tensor* conv(int64_t layer) const { return conv_[layer]; }
    ggml_tensor* delta(int64_t layer) const { return delta_[layer]; }
    size_t nbytes() const { return tensors_.nbytes(); }
    // Zeroes every state (the start of a sequence).
    void clear();

private:
    std::vector<ggml_tensor*> conv_, delta_;
    BackendTensors tensors_;
};

}  // namespace corehead
