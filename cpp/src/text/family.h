// One text architecture (llama, qwen2, qwen2vl, gemma3, ...) behind one small interface.
// Each family lives in its own file (text/<family>.cpp) and registers itself in family.cpp.
#pragma once
#include <string>
#include <vector>

#include "gguf/tensor_check.h"
#include "text/graph.h"
#include "text/hparams.h"

namespace corehead {

class TextFamily {
public:
    virtual ~TextFamily() = default;
    virtual const char* arch() const = 0;
    // Reads family-specific hyper-parameters after read_common_text_hparams.
    virtual void read_hparams(const GgufFile& f, TextHParams& hp) const = 0;
    // Every tensor the family's GGUF holds, with shapes derived from hp.
    virtual std::vector<TensorSpec> tensor_specs(const TextHParams& hp) const = 0;
    // The forward pass for one batch; returns logits [n_vocab, n_output_rows].
    virtual ggml_tensor* build(DecoderGraph& g) const = 0;
    // True when positions are 3-D (M-RoPE): DecoderBatch::positions holds 4 * n_tokens values.
    virtual bool uses_mrope() const { return false; }
};

// nullptr when the architecture is not supported.
const TextFamily* find_text_family(const std::string& arch);
std::vector<std::string> supported_text_archs();

// Shared building blocks for the families' tensor specs.
std::vector<TensorSpec> llama_like_tensor_specs(const TextHParams& hp, bool qkv_bias_required);
// The LLaMA/Qwen2 forward pass (pre-RMSNorm, RoPE in `rope_mode`, optional q/k/v biases, SwiGLU).
ggml_tensor* build_llama_like(DecoderGraph& g, int rope_mode);

}  // namespace corehead
