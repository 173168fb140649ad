// One text architecture (llama, qwen2, qwen2vl, gemma3, ...) behind one small interface.
// Each family lives in its own file (text/<family>.cpp) and registers itself in family.cpp.
#pragma once
#include <string>
#include <vector>

#include "gguf/tensor_check.h"
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
};

// nullptr when the architecture is not supported.
const TextFamily* find_text_family(const std::string& arch);
std::vector<std::string> supported_text_archs();

// Shared building blocks for the families' tensor specs.
std::vector<TensorSpec> llama_like_tensor_specs(const TextHParams& hp, bool qkv_bias_required);

}  // namespace corehead
