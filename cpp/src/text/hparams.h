// Hyper-parameters of a decoder-only text model, read from `<arch>.*` GGUF keys.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace corehead {

class GgufFile;

// How RoPE angles are scaled (<arch>.rope.scaling.*): not at all, linearly (positions / factor) or
// by YaRN. The fields are ggml_rope_ext's arguments, set so that ggml computes what transformers'
// rope utils compute (hparams.cpp: read_rope_scaling).
struct RopeScaling {
    enum class Type { none, linear, yarn };
    Type type = Type::none;
    float freq_scale = 1.0f;   // 1 / rope.scaling.factor (linear, yarn)
    // YaRN (transformers' _compute_yarn_parameters): rotary pairs that turn more than beta_fast
    // times over n_ctx_orig positions keep their frequency, those under beta_slow are
    // interpolated, a linear ramp between; cos/sin are scaled by transformers' attention_factor.
    float ext_factor = 0.0f;   // 1 with YaRN (ggml's ramp weight), 0 otherwise
    float attn_factor = 1.0f;  // attention_factor / (1 + 0.1 ln factor): ggml multiplies that back in
    float beta_fast = 32.0f;
    float beta_slow = 1.0f;
    int64_t n_ctx_orig = 0;    // rope.scaling.original_context_length, else the training context
};

struct TextHParams {
    std::string arch;
    int64_t n_layer = 0;
    int64_t n_embd = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t n_ff = 0;         // the widest FFN when the width differs per layer (layer_n_ff)
    std::vector<int64_t> layer_n_ff;  // per-layer FFN widths (gemma4 double-wide MLP); empty = n_ff everywhere
    int64_t n_vocab = 0;
    int64_t n_ctx_train = 0;
    int64_t head_dim_k = 0;   // per-head key/query size
    int64_t head_dim_v = 0;   // per-head value size
    int64_t n_rot = 0;        // rotary dimensions per head
    float rms_eps = 1e-6f;
    float rope_freq_base = 10000.0f;
    RopeScaling rope_scaling;  // of the global-attention layers (gemma3's local ones are unscaled)
    bool tied_output = false;  // no output.weight: logits reuse token_embd

    // Sliding-window attention (gemma3): window size and which layers use it.
    int64_t n_swa = 0;
    std::vector<bool> swa_layers;
    float rope_freq_base_swa = 10000.0f;

    // M-RoPE (qwen2vl, qwen3vl): rotary dims given to temporal/height/width/extra sections.
    std::array<int, 4> rope_sections{0, 0, 0, 0};

    // DeepStack (qwen3vl): visual features of the mmproj's DeepStack layers are added to the
    // output of text layers 0 .. n_deepstack-1 at the image positions.
    int64_t n_deepstack = 0;

    // Mixture of experts (qwen3vlmoe): n_expert FFNs of width n_ff_exp per layer, n_expert_used
    // routed per token with softmax weights renormalized over the chosen ones.
    int64_t n_expert = 0, n_expert_used = 0, n_ff_exp = 0;
    int64_t n_ff_shexp = 0;  // the shared expert's width (qwen35moe)

    // Attention temperature (Llama 4, Ministral 3): queries are multiplied after RoPE by
    // 1 + attn_temperature_scale * log(1 + floor(pos / attn_temperature_length)); 0 = off.
    float attn_temperature_scale = 0.0f;
    int64_t attn_temperature_length = 0;

    // Hybrid decoders (qwen35): recurrent_layers[l] marks a Gated DeltaNet (linear attention)
    // layer, which has no attention heads and no KV cache; its state is a short causal
    // convolution window (ssm_d_conv - 1 inputs of the conv channels) and one
    // [ssm_d_state, ssm_d_state] matrix per value head (runtime/recurrent_state.h). Empty: none.
    std::vector<bool> recurrent_layers;
    int64_t ssm_d_conv = 0;    // convolution kernel length
    int64_t ssm_d_state = 0;   // key (= value) head size of the delta rule
    int64_t ssm_n_group = 0;   // key heads
    int64_t ssm_dt_rank = 0;   // value heads
    int64_t ssm_d_inner = 0;   // value heads * value head size
    int64_t n_nextn = 0;       // multi-token-prediction blocks after the n_layer decoder layers (not run)
    // Head sizes of the sliding-window layers where they differ from the global ones (gemma4:
    // 256 local, 512 global); 0 = the same as head_dim_k / head_dim_v / n_rot.
    int64_t head_dim_k_swa = 0, head_dim_v_swa = 0, n_rot_swa = 0;

    // KV sharing (gemma4): layer i attends over the K/V of layer kv_source[i] (itself when
    // kv_source[i] == i, or when kv_source is empty); a sharing layer has no K/V of its own and
    // writes no cache.
    std::vector<int64_t> kv_source;

    // Per-layer embeddings (gemma4 PLE): n_embd_per_layer values per layer and token; 0 = none.
    int64_t n_embd_per_layer = 0;
    int64_t pad_token_id = 0;  // the PLE token row of visual positions (tokenizer.ggml.padding_token_id)
    // tanh softcapping of the logits (gemma4: cap * tanh(logit / cap)); 0 = off.
    float final_logit_softcap = 0.0f;

    int64_t n_embd_q() const { return n_head * head_dim_k; }
    bool is_recurrent(int64_t layer) const {
        return layer >= 0 && layer < (int64_t)recurrent_layers.size() && recurrent_layers[layer];
    }
    bool has_recurrent() const {
        for (bool r : recurrent_layers) {
            if (r) return true;
        }
        return false;
    }
    // The layers with attention heads (every layer unless the model is hybrid).
    std::vector<int32_t> attention_layers() const {
        std::vector<int32_t> out;
        for (int64_t l = 0; l < n_layer; ++l) {
            if (!is_recurrent(l)) out.push_back(static_cast<int32_t>(l));
        }
        return out;
    }
    int64_t ssm_conv_channels() const { return ssm_d_inner + 2 * ssm_n_group * ssm_d_state; }
    // f32 conv window + delta-rule memory of every recurrent layer (runtime/recurrent_state.h).
    int64_t recurrent_state_bytes() const {
        const int64_t per_layer = (ssm_d_conv - 1) * ssm_conv_channels() + ssm_d_state * ssm_d_state * ssm_dt_rank;
        return 4 * per_layer * (n_layer - static_cast<int64_t>(attention_layers().size()));
    }
    int64_t n_embd_k_gqa() const { return n_head_kv * head_dim_k; }
    int64_t n_embd_v_gqa() const { return n_head_kv * head_dim_v; }
    bool is_swa(int64_t layer) const { return n_swa > 0 && layer < (int64_t)swa_layers.size() && swa_layers[layer]; }
    int64_t ff(int64_t layer) const {
        return layer < static_cast<int64_t>(layer_n_ff.size()) ? layer_n_ff[layer] : n_ff;
    }
    int64_t head_k(int64_t layer) const { return is_swa(layer) && head_dim_k_swa > 0 ? head_dim_k_swa : head_dim_k; }
    int64_t head_v(int64_t layer) const { return is_swa(layer) && head_dim_v_swa > 0 ? head_dim_v_swa : head_dim_v; }
    int64_t rot(int64_t layer) const { return is_swa(layer) && n_rot_swa > 0 ? n_rot_swa : n_rot; }
    // Whether every layer has the same value head size (head means and head sums need it).
    bool uniform_head_v() const {
        for (int64_t l = 0; l < n_layer; ++l) {
            if (head_v(l) != head_dim_v) return false;
        }
        return true;
    }
    int64_t kv_layer(int64_t layer) const {
        return layer < static_cast<int64_t>(kv_source.size()) ? kv_source[layer] : layer;
    }
    bool owns_kv(int64_t layer) const { return kv_layer(layer) == layer; }
};

// Reads the keys every supported text architecture shares and checks their ranges.
void read_common_text_hparams(const GgufFile& f, TextHParams& hp);

// <arch>.rope.scaling.* (type none / linear / yarn, factor, original_context_length, yarn_*); any
// other type is refused. Needs hp.arch, n_ctx_train and n_rot.
RopeScaling read_rope_scaling(const GgufFile& f, const TextHParams& hp);

}  // namespace corehead
