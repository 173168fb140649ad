#include "text/text_model.h"

#include "gguf.h"
#include "gguf/file_info.h"

namespace corehead {

namespace {

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
}

}  // namespace

void check_tokenizer_metadata(const GgufFile& f, int64_t n_vocab, std::string& model, std::string& pre, int64_t& n_tokens) {
    model = f.find_str("tokenizer.ggml.model").value_or("");
    pre = f.find_str("tokenizer.ggml.pre").value_or("");
    if (model.empty() || model == "none") return;
    if (model != "llama" && model != "gpt2" && model != "gemma4") {
        f.fail("tokenizer type '" + model + "' is not supported yet (supported: llama (SentencePiece), gpt2 (byte-level BPE), "
               "gemma4 (SentencePiece-style BPE))");
    }
    if (!f.has("tokenizer.ggml.tokens")) f.fail("missing metadata key 'tokenizer.ggml.tokens'");
    n_tokens = static_cast<int64_t>(f.find_str_array("tokenizer.ggml.tokens")->size());
    if (n_tokens == 0) f.fail("tokenizer.ggml.tokens is empty");
    if (n_tokens > n_vocab) {
        f.fail("the tokenizer has " + std::to_string(n_tokens) + " tokens but the model only " + std::to_string(n_vocab) +
               " embedding rows");
    }
    for (const char* key : {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"}) {
        const size_t n = f.array_size(key);
        if (f.has(key) && static_cast<int64_t>(n) != n_tokens) {
            f.fail(std::string("'") + key + "' has " + std::to_string(n) + " entries for " + std::to_string(n_tokens) + " tokens");
        }
    }
    if (model == "llama" && !f.has("tokenizer.ggml.scores")) f.fail("SentencePiece tokenizer without 'tokenizer.ggml.scores'");
    if ((model == "gpt2" || model == "gemma4") && !f.has("tokenizer.ggml.merges")) {
        f.fail("BPE tokenizer without 'tokenizer.ggml.merges'");
    }
    for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
                            "tokenizer.ggml.padding_token_id", "tokenizer.ggml.eot_token_id"}) {
        if (auto id = f.find_int(key); id && (*id < -1 || *id >= n_tokens)) {
            // -1 and the GGUF "unset" value 0xFFFFFFFF (read as 4294967295) mean "none".
            if (*id != 4294967295LL) f.fail(std::string("'") + key + "' = " + std::to_string(*id) + " is not a token id");
        }
    }
}

TextInfo text_info(const TextModelFile& m) {
    TextInfo i;
    set_file_info(i, m);
    i.arch = m.hp.arch;
    i.n_layer = m.hp.n_layer;
    i.n_head = m.hp.n_head;
    i.n_head_kv = m.hp.n_head_kv;
    i.n_embd = m.hp.n_embd;
    i.n_ff = m.hp.n_ff;
    i.n_vocab = m.hp.n_vocab;
    i.n_ctx_train = m.hp.n_ctx_train;
    i.head_dim = m.hp.head_dim_k;
    for (int64_t l = 0; l < m.hp.n_layer; ++l) {
        i.layer_head_dims.push_back(m.hp.head_v(l));
        i.kv_source_layers.push_back(m.hp.kv_layer(l));
    }
    i.n_deepstack = m.hp.n_deepstack;
    i.attention_layers = m.hp.attention_layers();
    i.recurrent_state_bytes = m.hp.recurrent_state_bytes();
    i.deltanet_value_heads = m.hp.has_recurrent() ? m.hp.ssm_dt_rank : 0;
    i.n_expert = m.hp.n_expert;
    i.n_expert_used = m.hp.n_expert_used;
    i.vocab_only = m.vocab_only;
    i.tokenizer = m.tokenizer_model;
    i.tokenizer_pre = m.tokenizer_pre;
    i.n_tokens = m.n_tokens;
    return i;
}

TextModelFile open_text_model(const std::string& path) {
    TextModelFile m;
    m.file = std::make_unique<GgufFile>(path);
    const GgufFile& f = *m.file;
    const std::string arch = f.architecture();
    if (arch.empty()) f.fail("missing 'general.architecture'; this does not look like a model file");
    if (arch == "clip") {
        f.fail("this is a vision projector (mmproj) file, not a language model: pass it as mmproj=..., and the "
               "language-model GGUF as the model");
    }
    m.family = find_text_family(arch);
    if (!m.family) f.fail("architecture not supported yet: " + arch + " (supported: " + join(supported_text_archs()) + ")");
    m.hp.arch = arch;
    read_common_text_hparams(f, m.hp);
    m.family->read_hparams(f, m.hp);
    m.name = f.find_str("general.name").value_or("");
    m.file_type = f.find_int("general.file_type").value_or(-1);
    check_tokenizer_metadata(f, m.hp.n_vocab, m.tokenizer_model, m.tokenizer_pre, m.n_tokens);
    for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
        if (auto id = f.find_int(key); id && *id >= 0 && *id < m.n_tokens) m.eog_tokens.push_back(static_cast<int32_t>(*id));
    }
    m.vocab_only = f.n_tensors() == 0;
    if (!m.vocab_only) check_tensors(f, text_tensor_table(*m.family, m.hp).specs());
    return m;
}

}  // namespace corehead
