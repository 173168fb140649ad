// Mistral 3 text decoders (Mistral Small 3.x, the text of Mistral3ForConditionalGeneration): the
// LLaMA layout (the converter permutes q/k for the normal RoPE layout), with head_dim its own key
// (Mistral Small: 128 with 5120 / 32 heads). Ministral 3 text configs (transformers'
// Ministral3Config) add YaRN RoPE (rope.scaling.*, read for every family) and the Llama 4 query
// temperature: attention.temperature_scale (llama_4_scaling_beta) over steps of the original
// context (rope.scaling.original_context_length), applied by DecoderGraph::attention.
#include <cmath>

#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Mistral3Family final : public TextFamily {
public:
    const char* arch() const override { return "mistral3"; }
    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        if (auto t = f.find_float("mistral3.attention.temperature_scale"); t && *t != 0.0f) {
            if (!std::isfinite(*t)) f.fail("mistral3.attention.temperature_scale must be finite");
            hp.attn_temperature_scale = *t;
            // transformers divides by original_max_position_embeddings, llama.cpp by n_ctx_orig_yarn:
            // both rope.scaling.original_context_length (else the training context).
            hp.attn_temperature_length = hp.rope_scaling.n_ctx_orig;
        }
    }
    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        add_embedding_tensors(hp, t, /*rope_freqs=*/true);
        add_attention_tensors(hp, t, /*biases=*/true, /*qkv_bias_required=*/false);
        add_ffn_tensors(hp, t);
    }
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, /*rope_mode=*/0); }
};

}  // namespace

const TextFamily& mistral3_family() {
    static const Mistral3Family f;
    return f;
}

}  // namespace corehead
