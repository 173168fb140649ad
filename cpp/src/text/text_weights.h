// The tensors of a text model resolved once by name (nullptr = absent optional tensor).
#pragma once
#include <vector>

struct ggml_tensor;

namespace corehead {

class Weights;
struct TextHParams;

struct LayerWeights {
    ggml_tensor *attn_norm = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
    ggml_tensor *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    ggml_tensor *q_norm = nullptr, *k_norm = nullptr, *attn_post_norm = nullptr;  // gemma3
    ggml_tensor *ffn_norm = nullptr, *ffn_gate = nullptr, *ffn_up = nullptr, *ffn_down = nullptr;
    ggml_tensor *ffn_post_norm = nullptr;                                           // gemma3
};

struct TextWeights {
    ggml_tensor *tok_embd = nullptr, *output_norm = nullptr, *output = nullptr, *rope_freqs = nullptr;
    std::vector<LayerWeights> layers;
};

TextWeights resolve_text_weights(const Weights& w, const TextHParams& hp);

}  // namespace corehead
