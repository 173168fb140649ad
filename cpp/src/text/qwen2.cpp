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
    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        const std::string key = "qwen2vl.rope.dimension_sections";
        auto sections = f.find_int_array(key);
        if (!sections) f.fail("missing metadata key '" + key + "' (M-RoPE sections)");
        if (sections->size() < 3 || sections->size() > 4) f.fail("'" + key + "' must hold 3 or 4 values");
        int64_t total = 0;
        for (size_t i = 0; i < sections->size(); ++i) {
            const int64_t v = (*sections)[i];
            if (v < 0 || v > hp.n_rot) f.fail("'" + key + "' has an out-of-range value");
            hp.rope_sections[i] = static_cast<int>(v);
            total += v;
        }
        if (total * 2 > hp.n_rot) {
            f.fail("'" + key + "' sums to " + std::to_string(total) + " pairs, more than the " + std::to_string(hp.n_rot / 2) +
                   " rotary pairs per head");
        }
    }
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
