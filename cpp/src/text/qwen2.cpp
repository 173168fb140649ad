// Qwen2 decoders (LLaMA layout with q/k/v biases) and Qwen2-VL (the same with M-RoPE:
// rotary dimensions split into temporal/height/width sections driven by 3-D positions).
#include "gguf/gguf_file.h"
#include "text/family.h"

namespace corehead {

namespace {

class Qwen2Family : public TextFamily {
public:
    const char* arch() const override { return "qwen2"; }
    void tensors(const TextHParams& hp, TextTensorTable& t) const override {
        add_embedding_tensors(hp, t, /*rope_freqs=*/true);
        add_attention_tensors(hp, t, /*biases=*/true, /*qkv_bias_required=*/true);
        add_ffn_tensors(hp, t);
    }
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, GGML_ROPE_TYPE_NEOX); }
};

class Qwen2VLFamily final : public Qwen2Family {
public:
    const char* arch() const override { return "qwen2vl"; }
    RopePositions positions() const override { return RopePositions::mrope; }
    ggml_tensor* build(DecoderGraph& g) const override { return build_llama_like(g, GGML_ROPE_TYPE_MROPE); }
    void read_hparams(const GgufFile& f, TextHParams& hp) const override { read_rope_sections(f, hp); }
};

}  // namespace

const TextFamily& qwen2_family() {
    static const Qwen2Family f;
    return f;
}

const TextFamily& qwen2vl_family() {
    static const Qwen2VLFamily f;
    return f;
}

}  // namespace corehead
