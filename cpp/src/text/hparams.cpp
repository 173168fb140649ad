#include "text/hparams.h"

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

namespace {

int64_t positive(const GgufFile& f, const std::string& key, int64_t v, int64_t max) {
    if (v <= 0 || v > max) f.fail("metadata '" + key + "' = " + std::to_string(v) + " is out of range (1.." + std::to_string(max) + ")");
    return v;
}

}  // namespace

void read_common_text_hparams(const GgufFile& f, TextHParams& hp) {
    const std::string a = hp.arch + ".";
    auto req = [&](const std::string& k, int64_t max) { return positive(f, a + k, f.get_int(a + k), max); };

    hp.n_layer = req("block_count", 4096);
    hp.n_embd = req("embedding_length", 1 << 20);
    hp.n_ff = req("feed_forward_length", 1 << 22);
    hp.n_head = req("attention.head_count", 4096);
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
    if (auto s = f.find_str(a + "rope.scaling.type"); s && *s == "linear") {
        const float factor = f.find_float(a + "rope.scaling.factor").value_or(1.0f);
        if (!(factor > 0.0f)) f.fail("rope.scaling.factor must be positive");
        hp.rope_freq_scale = 1.0f / factor;
    }

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
