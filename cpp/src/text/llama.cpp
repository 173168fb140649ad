// LLaMA-style decoders: LLaMA 1-3, Mistral, SmolLM2 (RMSNorm, RoPE, SwiGLU, GQA).
#include "text/families.h"
#include "text/family.h"

namespace corehead {

namespace {

class LlamaFamily final : public TextFamily {
public:
    const char* arch() const override { return "llama"; }
    void read_hparams(const GgufFile&, TextHParams&) const override {}
    std::vector<TensorSpec> tensor_specs(const TextHParams& hp) const override {
        return llama_like_tensor_specs(hp, /*qkv_bias_required=*/false);
    }
};

}  // namespace

const TextFamily& llama_family() {
    static const LlamaFamily f;
    return f;
}

}  // namespace corehead
