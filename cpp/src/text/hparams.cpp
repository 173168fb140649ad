#include "text/hparams.h"

#include <algorithm>
#include <cmath>

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

namespace {

int64_t positive(const GgufFile& f, const std::string& key, int64_t v, int64_t max) {
    if (v <= 0 || v > max) f.fail("metadata '" + key + "' = " + std::to_string(v) + " is out of range (1.." + std::to_string(max) + ")");
    return v;
}

}  // namespace

RopeScaling read_rope_scaling(const GgufFile& f, const TextHParams& hp) {
    const std::string a = hp.arch + ".rope.scaling.";
    RopeScaling r;
    r.n_ctx_orig = f.has(a + "original_context_length")
                       ? positive(f, a + "original_context_length", f.get_int(a + "original_context_length"), int64_t(1) << 30)
                       : hp.n_ctx_train;
    const std::string type = f.find_str(a + "type").value_or("none");
    if (type == "none") return r;
    if (type != "linear" && type != "yarn") {
        f.fail(a + "type '" + type + "' is not supported (none, linear and yarn are); the logits would differ from "
               "the model's");
    }
    const float factor = f.find_float(a + "factor").value_or(1.0f);
    if (!(factor > 0.0f && std::isfinite(factor))) f.fail(a + "factor must be positive");
    r.freq_scale = 1.0f / factor;
    if (type == "linear") {
        r.type = RopeScaling::Type::linear;
        return r;
    }
    // YaRN as transformers computes it (modeling_rope_utils._compute_yarn_parameters).
    r.type = RopeScaling::Type::yarn;
    r.ext_factor = 1.0f;
    if (auto e = f.find_float(a + "yarn_ext_factor"); e && *e != 1.0f) {
        f.fail(a + "yarn_ext_factor = " + std::to_string(*e) + " is not supported: transformers' YaRN has no "
               "extrapolation factor (it is always 1)");
    }
    // beta_fast / beta_slow: transformers takes 32 / 1 when they are absent or 0.
    if (auto b = f.find_float(a + "yarn_beta_fast"); b && *b != 0.0f) r.beta_fast = *b;
    if (auto b = f.find_float(a + "yarn_beta_slow"); b && *b != 0.0f) r.beta_slow = *b;
    if (!(r.beta_fast > 0.0f && r.beta_slow > 0.0f && std::isfinite(r.beta_fast) && std::isfinite(r.beta_slow))) {
        f.fail(a + "yarn_beta_fast / yarn_beta_slow must be positive");
    }
    // transformers' attention_factor: the config's attention_factor when given (the converter writes
    // it as yarn_attn_factor; llama.cpp overrides it by the mscale formula), else
    // get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim) with mscale_all_dim written as
    // yarn_log_multiplier and mscale taken as 1 (the converter does not write it; Ministral 3 and
    // llama.cpp use 1), else get_mscale(factor).
    auto get_mscale = [](double scale, double mscale) { return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0; };
    double attention_factor = get_mscale(factor, 1.0);
    if (auto given = f.find_float(a + "yarn_attn_factor")) {
        attention_factor = *given;
    } else if (auto all_dim = f.find_float(a + "yarn_log_multiplier"); all_dim && *all_dim != 0.0f) {
        attention_factor = get_mscale(factor, 1.0) / get_mscale(factor, *all_dim);
    }
    // ggml_rope_ext multiplies cos/sin by attn_factor * (1 + 0.1 ln factor) when ext_factor != 0.
    const double ggml_mscale = 1.0 + 0.1 * std::log(static_cast<double>(factor));
    if (!(ggml_mscale > 0.0) || !(attention_factor > 0.0) || !std::isfinite(attention_factor)) {
        f.fail(a + "factor / yarn attention factor out of range for YaRN");
    }
    r.attn_factor = static_cast<float>(attention_factor / ggml_mscale);
    return r;
}

void read_common_text_hparams(const GgufFile& f, TextHParams& hp) {
    const std::string a = hp.arch + ".";
    auto req = [&](const std::string& k, int64_t max) { return positive(f, a + k, f.get_int(a + k), max); };

    hp.n_layer = req("block_count", 4096);
    hp.n_embd = req("embedding_length", 1 << 20);
    if (f.is_array(a + "feed_forward_length")) {
        const auto per_layer = f.find_int_array(a + "feed_forward_length");
        // One width per layer (gemma4's use_double_wide_mlp: the KV-sharing layers' FFNs are 2x).
        if (static_cast<int64_t>(per_layer->size()) != hp.n_layer) {
            f.fail(a + "feed_forward_length holds " + std::to_string(per_layer->size()) + " widths for " +
                   std::to_string(hp.n_layer) + " layers");
        }
        for (int64_t v : *per_layer) {
            if (v <= 0 || v > (1 << 22)) f.fail("metadata '" + a + "feed_forward_length' has an out-of-range width");
            hp.n_ff = std::max(hp.n_ff, v);
        }
        hp.layer_n_ff = *per_layer;
    } else {
        hp.n_ff = req("feed_forward_length", 1 << 22);
    }
    hp.n_head = req("attention.head_count", 4096);
    if (f.is_array(a + "attention.head_count_kv")) {
        f.fail(a + "attention.head_count_kv holds one count per layer (e.g. Gemma 4 31B: fewer KV heads on its "
               "global layers); corehead supports one KV head count for all layers so far");
    }
    hp.n_head_kv = f.has(a + "attention.head_count_kv") ? req("attention.head_count_kv", 4096) : hp.n_head;
    if (hp.n_head % hp.n_head_kv != 0) {
        f.fail("attention.head_count (" + std::to_string(hp.n_head) + ") is not a multiple of attention.head_count_kv (" +
               std::to_string(hp.n_head_kv) + ")");
    }
    hp.n_ctx_train = f.has(a + "context_length") ? req("context_length", int64_t(1) << 30) : 4096;
    const int64_t default_head_dim = hp.n_embd / hp.n_head;
    hp.head_dim_k = f.has(a + "attention.key_length") ? req("attention.key_length", 1 << 16) : default_head_dim;
    hp.head_dim_v = f.has(a + "attention.value_length") ? req("attention.value_length", 1 << 16) : default_head_dim;
    if (hp.head_dim_k <= 0 || hp.head_dim_v <= 0) f.fail("cannot derive the attention head size");
    hp.n_rot = f.has(a + "rope.dimension_count") ? req("rope.dimension_count", 1 << 16) : hp.head_dim_k;
    if (hp.n_rot > hp.head_dim_k || hp.n_rot % 2 != 0) {
        f.fail("rope.dimension_count (" + std::to_string(hp.n_rot) + ") must be even and at most the head size (" +
               std::to_string(hp.head_dim_k) + ")");
    }
    hp.rms_eps = f.find_float(a + "attention.layer_norm_rms_epsilon").value_or(1e-6f);
    if (!(hp.rms_eps > 0.0f && hp.rms_eps < 1.0f)) f.fail("attention.layer_norm_rms_epsilon is out of range");
    hp.rope_freq_base = f.find_float(a + "rope.freq_base").value_or(10000.0f);
    if (!(hp.rope_freq_base > 0.0f)) f.fail("rope.freq_base must be positive");
    hp.rope_scaling = read_rope_scaling(f, hp);

    // The vocabulary size: token embedding rows (may exceed the tokenizer's count, e.g. Qwen2
    // pads them), else <arch>.vocab_size, else the tokenizer's token count (vocab-only files).
    if (const ggml_tensor* emb = f.find_tensor("token_embd.weight")) {
        hp.n_vocab = emb->ne[1];
    } else if (auto v = f.find_int(a + "vocab_size")) {
        hp.n_vocab = *v;
    } else {
        hp.n_vocab = static_cast<int64_t>(f.array_size("tokenizer.ggml.tokens"));
    }
    if (hp.n_vocab <= 0) f.fail("cannot determine the vocabulary size (no token_embd.weight, vocab_size or tokens)");
    hp.tied_output = f.find_tensor("output.weight") == nullptr;
}

}  // namespace corehead
