// Mistral 3 text decoders (Mistral Small 3.x, the text of Mistral3ForConditionalGeneration): the
// LLaMA layout (the converter permutes q/k for the normal RoPE layout), with head_dim its own key
// (Mistral Small: 128 with 5120 / 32 heads). transformers' MistralConfig has no attention
// temperature; the converter writes attention.temperature_scale (+ YaRN RoPE) only for Ministral 3
// text configs (llama_4_scaling_beta), which this family does not implement yet: refused, not
// silently run without it.
#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Mistral3Family final : public TextFamily {
public:
    const char* arch() const override { return "mistral3"; }
    void read_hparams(const GgufFile& f, TextHParams&) const override {
        if (auto t = f.find_float("mistral3.attention.temperature_scale"); t && *t != 0.0f) {
            f.fail("mistral3.attention.temperature_scale = " + std::to_string(*t) +
                   " (Ministral 3 / Llama 4 attention temperature scaling) is not supported yet");
        }
        if (auto s = f.find_str("mistral3.rope.scaling.type"); s && *s != "none" && *s != "linear") {
            f.fail("mistral3.rope.scaling.type '" + *s + "' is not supported yet (only none / linear)");
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
