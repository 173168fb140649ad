// Gemma 3 decoders: pre+post norms around attention and FFN, q/k RMS norms, GELU gating,
// embeddings scaled by sqrt(n_embd), and interleaved sliding-window layers.
#include "gguf/gguf_file.h"
#include "text/families.h"
#include "text/family.h"

namespace corehead {

namespace {

class Gemma3Family final : public TextFamily {
public:
    const char* arch() const override { return "gemma3"; }

    void read_hparams(const GgufFile& f, TextHParams& hp) const override {
        hp.n_swa = f.find_int("gemma3.attention.sliding_window").value_or(0);
        if (hp.n_swa < 0) f.fail("gemma3.attention.sliding_window must not be negative");
        hp.swa_layers.assign(hp.n_layer, false);
        if (hp.n_swa > 0) {
            // The converter writes no pattern; Gemma 3 uses 5 local layers then 1 global one.
            int64_t period = 6;
            if (auto p = f.find_int("gemma3.attention.sliding_window_pattern")) period = *p;
            if (period <= 0) f.fail("gemma3.attention.sliding_window_pattern must be positive");
            for (int64_t i = 0; i < hp.n_layer; ++i) hp.swa_layers[i] = (i + 1) % period != 0;
            hp.rope_freq_base_swa = f.find_float("gemma3.rope.freq_base_swa").value_or(10000.0f);
        }
    }

    std::vector<TensorSpec> tensor_specs(const TextHParams& hp) const override {
        const int64_t E = hp.n_embd;
        std::vector<TensorSpec> s = {
            {"token_embd.weight", {E, hp.n_vocab}},
            {"output_norm.weight", {E}},
            {"output.weight", {E, hp.n_vocab}, false},
        };
        for (int64_t i = 0; i < hp.n_layer; ++i) {
            const std::string b = "blk." + std::to_string(i) + ".";
            s.push_back({b + "attn_norm.weight", {E}});
            s.push_back({b + "attn_q.weight", {E, hp.n_embd_q()}});
            s.push_back({b + "attn_k.weight", {E, hp.n_embd_k_gqa()}});
            s.push_back({b + "attn_v.weight", {E, hp.n_embd_v_gqa()}});
            s.push_back({b + "attn_q_norm.weight", {hp.head_dim_k}});
            s.push_back({b + "attn_k_norm.weight", {hp.head_dim_k}});
            s.push_back({b + "attn_output.weight", {hp.n_head * hp.head_dim_v, E}});
            s.push_back({b + "post_attention_norm.weight", {E}});
            s.push_back({b + "ffn_norm.weight", {E}});
            s.push_back({b + "ffn_gate.weight", {E, hp.n_ff}});
            s.push_back({b + "ffn_up.weight", {E, hp.n_ff}});
            s.push_back({b + "ffn_down.weight", {hp.n_ff, E}});
            s.push_back({b + "post_ffw_norm.weight", {E}});
        }
        return s;
    }
};

}  // namespace

const TextFamily& gemma3_family() {
    static const Gemma3Family f;
    return f;
}

}  // namespace corehead
