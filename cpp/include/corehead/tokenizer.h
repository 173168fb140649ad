// A GGUF's tokenizer (SentencePiece-style or byte-level BPE), loadable from any GGUF,
// vocabulary-only files included. Cheap to copy (shares the vocabulary).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace corehead {

class Vocab;

class Tokenizer {
public:
    // Reads tokenizer.ggml.* from `path`. Throws FileNotFound / ModelError.
    static Tokenizer from_file(const std::string& path);
    explicit Tokenizer(std::shared_ptr<const Vocab> vocab);

    std::vector<int32_t> tokenize(const std::string& text, bool add_special, bool parse_special) const;
    std::string detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const;
    std::string token_to_piece(int32_t id, bool unparse_special = true) const;  // raw bytes
    std::string token_text(int32_t id) const;  // the vocabulary entry
    int32_t find(const std::string& text) const;
    int32_t n_tokens() const;
    int32_t bos() const;
    int32_t eos() const;
    bool is_eog(int32_t id) const;
    bool is_control(int32_t id) const;
    std::string type_name() const;
    std::string pre_name() const;
    std::vector<int32_t> eog_tokens() const;

private:
    void check_id(int32_t id) const;
    std::shared_ptr<const Vocab> vocab_;
};

}  // namespace corehead
