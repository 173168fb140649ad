// The tensors of a text model: each family names them once, in its tensor table (shape, whether
// required, and the TextWeights / LayerWeights slot it fills); the same table validates the GGUF
// (gguf/tensor_check.h) and resolves the loaded weights. nullptr = an absent optional tensor.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "gguf/tensor_check.h"

struct ggml_tensor;

namespace corehead {

class Weights;

struct LayerWeights {
    ggml_tensor *attn_norm = nullptr, *wq = nullptr, *wk = nullptr, *wv = nullptr, *wo = nullptr;
    ggml_tensor *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
    ggml_tensor *q_norm = nullptr, *k_norm = nullptr, *attn_post_norm = nullptr;
    ggml_tensor *ffn_norm = nullptr, *ffn_gate = nullptr, *ffn_up = nullptr, *ffn_down = nullptr;
    ggml_tensor *ffn_post_norm = nullptr;
    // MoE: the router [n_embd, n_expert] and the experts stacked [.., .., n_expert].
    ggml_tensor *ffn_gate_inp = nullptr, *ffn_gate_exps = nullptr, *ffn_up_exps = nullptr, *ffn_down_exps = nullptr;
    // A shared expert beside the routed ones (qwen35moe): a SwiGLU FFN scaled by sigmoid(ffn_gate_inp_shexp · x).
    ggml_tensor *ffn_gate_inp_shexp = nullptr, *ffn_gate_shexp = nullptr, *ffn_up_shexp = nullptr;
    ggml_tensor *ffn_down_shexp = nullptr;
    // Gated DeltaNet (qwen35 linear-attention layers): the joint q/k/v projection (attn_qkv), the
    // output gate z (attn_gate), the depthwise causal conv kernel, the decay (ssm_a = -exp(A_log),
    // ssm_dt = dt_bias, ssm_alpha), the write strength (ssm_beta), the gated RMSNorm and out_proj.
    ggml_tensor *wqkv = nullptr, *wqkv_gate = nullptr, *ssm_conv1d = nullptr, *ssm_dt = nullptr, *ssm_a = nullptr;
    ggml_tensor *ssm_beta = nullptr, *ssm_alpha = nullptr, *ssm_norm = nullptr, *ssm_out = nullptr;
    // Per-layer embeddings (gemma4): gate [n_embd, n_ple], projection [n_ple, n_embd], its norm;
    // and the scalar the layer's output is multiplied by.
    ggml_tensor *ple_gate = nullptr, *ple_proj = nullptr, *ple_post_norm = nullptr, *out_scale = nullptr;
};

struct TextWeights {
    ggml_tensor *tok_embd = nullptr, *output_norm = nullptr, *output = nullptr, *rope_freqs = nullptr;
    // Per-layer embeddings (gemma4): token table [n_layer * n_ple, n_vocab], the projection of the
    // input embedding [n_embd, n_layer * n_ple] and its norm [n_ple].
    ggml_tensor *ple_tok_embd = nullptr, *ple_model_proj = nullptr, *ple_proj_norm = nullptr;
    std::vector<LayerWeights> layers;
};

class TextTensorTable {
public:
    explicit TextTensorTable(int64_t n_layer) : n_layer_(n_layer) {}

    // A model-wide tensor.
    void add(const std::string& name, std::vector<int64_t> shape, ggml_tensor* TextWeights::*slot, bool required = true);
    // "blk.<i>.<suffix>" of every layer i, with the same shape.
    void add_layers(const std::string& suffix, const std::vector<int64_t>& shape, ggml_tensor* LayerWeights::*slot,
                    bool required = true);
    // "blk.<layer>.<suffix>" of one layer (tables whose shapes or tensors differ per layer: gemma4's
    // head sizes, hybrid models' layer kinds).
    void add_layer(int64_t layer, const std::string& suffix, std::vector<int64_t> shape,
                   ggml_tensor* LayerWeights::*slot, bool required = true);

    // A tensor the file may hold that the forward pass does not use (any shape; e.g. qwen35's
    // multi-token-prediction block).
    void allow(const std::string& name);

    std::vector<TensorSpec> specs() const;
    // The loaded tensors by slot; a model without output.weight uses its token embedding (tied).
    TextWeights resolve(const Weights& w) const;

private:
    struct Entry {
        TensorSpec spec;
        int64_t layer = -1;  // -1: model-wide
        ggml_tensor* TextWeights::*global = nullptr;
        ggml_tensor* LayerWeights::*per_layer = nullptr;
    };
    int64_t n_layer_;
    std::vector<Entry> entries_;
};

}  // namespace corehead
