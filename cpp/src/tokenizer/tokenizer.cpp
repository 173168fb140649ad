// corehead::Tokenizer: the public face of tokenizer/Vocab (argument checks live here).
#include "corehead/tokenizer.h"

#include "corehead/error.h"
#include "gguf/gguf_file.h"
#include "tokenizer/vocab.h"

namespace corehead {

Tokenizer Tokenizer::from_file(const std::string& path) {
    GgufFile f(path);
    if (!f.has("tokenizer.ggml.model")) f.fail("no tokenizer in this file (missing 'tokenizer.ggml.model')");
    return Tokenizer(std::shared_ptr<const Vocab>(Vocab::from_gguf(f)));
}

Tokenizer::Tokenizer(std::shared_ptr<const Vocab> vocab) : vocab_(std::move(vocab)) {}

void Tokenizer::check_id(int32_t id) const {
    if (id < 0 || id >= vocab_->n_tokens()) {
        throw InputError("token id " + std::to_string(id) + " is out of range [0, " + std::to_string(vocab_->n_tokens()) + ")");
    }
}

std::vector<int32_t> Tokenizer::tokenize(const std::string& text, bool add_special, bool parse_special) const {
    return vocab_->tokenize(text, add_special, parse_special);
}

std::string Tokenizer::detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const {
    for (int32_t id : ids) check_id(id);
    return vocab_->detokenize(ids, remove_special, unparse_special);
}

std::string Tokenizer::token_to_piece(int32_t id, bool unparse_special) const {
    check_id(id);
    return vocab_->token_to_piece(id, unparse_special);
}

std::string Tokenizer::token_text(int32_t id) const {
    check_id(id);
    return vocab_->token_text(id);
}

int32_t Tokenizer::find(const std::string& text) const { return vocab_->find(text); }
int32_t Tokenizer::n_tokens() const { return vocab_->n_tokens(); }
int32_t Tokenizer::bos() const { return vocab_->bos(); }
int32_t Tokenizer::eos() const { return vocab_->eos(); }
bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < vocab_->n_tokens() && vocab_->is_eog(id); }
bool Tokenizer::is_control(int32_t id) const { return id >= 0 && id < vocab_->n_tokens() && vocab_->is_control(id); }
std::string Tokenizer::type_name() const { return vocab_->type_name(); }
std::string Tokenizer::pre_name() const { return vocab_->pre_name(); }

std::vector<int32_t> Tokenizer::eog_tokens() const {
    std::vector<int32_t> out;
    for (int32_t i = 0; i < vocab_->n_tokens(); ++i) {
        if (vocab_->is_eog(i)) out.push_back(i);
    }
    return out;
}

}  // namespace corehead
