// One text architecture (llama, qwen2, qwen2vl, gemma3, ...) behind one small interface. Each
// family lives in its own file (text/<family>.cpp) and has one line in text/registry.cpp; the
// shared pieces (tensor-table parts, the LLaMA-like layer loop, DecoderGraph's blocks) do the rest.
#pragma once
#include <string>
#include <vector>

#include "text/graph.h"
#include "text/hparams.h"
#include "text/text_weights.h"

namespace corehead {

class GgufFile;

// How RoPE positions are given: one per token, or 3-D (M-RoPE: DecoderBatch::positions holds
// 4 * n_tokens values, section-major; the vision family supplies visual tokens' positions).
enum class RopePositions { sequential, mrope };

class TextFamily {
public:
    virtual ~TextFamily() = default;
    virtual const char* arch() const = 0;
    // Reads family-specific hyper-parameters after read_common_text_hparams.
    virtual void read_hparams(const GgufFile&, TextHParams&) const {}
    // Every tensor the family's GGUF holds, named once: shapes from hp, and their weight slots.
    virtual void tensors(const TextHParams& hp, TextTensorTable& t) const = 0;
    // The forward pass for one batch; returns logits [n_vocab, n_output_rows].
    virtual ggml_tensor* build(DecoderGraph& g) const = 0;
    virtual RopePositions positions() const { return RopePositions::sequential; }
};

// nullptr when the architecture is not supported (text/registry.cpp).
const TextFamily* find_text_family(const std::string& arch);
std::vector<std::string> supported_text_archs();

// The family's table for `hp` (validation and weight resolution read the same one).
TextTensorTable text_tensor_table(const TextFamily& family, const TextHParams& hp);

// Shared tensor-table pieces (text/family.cpp): token_embd, output_norm, output (tied when
// absent) and optionally rope_freqs; the attention projections with optional (or required) q/k/v
// biases; the gated FFN and its pre-norm.
void add_embedding_tensors(const TextHParams& hp, TextTensorTable& t, bool rope_freqs);
void add_attention_tensors(const TextHParams& hp, TextTensorTable& t, bool biases, bool qkv_bias_required);
void add_ffn_tensors(const TextHParams& hp, TextTensorTable& t);
// The MoE FFN: pre-norm, router ffn_gate_inp and the stacked experts ffn_{gate,up,down}_exps.
void add_moe_ffn_tensors(const TextHParams& hp, TextTensorTable& t);
// Reads <arch>.rope.dimension_sections (M-RoPE) into hp.rope_sections and checks it.
void read_rope_sections(const GgufFile& f, TextHParams& hp);
// The LLaMA/Qwen2/Qwen3 forward pass (pre-RMSNorm, RoPE in `rope_mode`, optional q/k/v biases,
// optional per-head q/k RMSNorm, SwiGLU or mixture-of-experts FFN, DeepStack additions).
ggml_tensor* build_llama_like(DecoderGraph& g, int rope_mode);

}  // namespace corehead
