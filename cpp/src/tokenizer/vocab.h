// Tokenizer built from a GGUF's `tokenizer.ggml.*` metadata (SentencePiece-style and
// byte-level BPE with the pre-tokenizer named by `tokenizer.ggml.pre`).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

class GgufFile;

namespace corehead {

using token_id = int32_t;

class Vocab {
public:
    // Reads tokenizer.ggml.model / tokens / scores / token_type / merges / pre and the
    // special token ids and add_bos/add_eos flags. Throws ModelError on bad metadata.
    static std::unique_ptr<Vocab> from_gguf(const GgufFile& file);
    virtual ~Vocab() = default;

    // add_special: prepend BOS / append EOS as the GGUF flags say.
    // parse_special: recognise control/user-defined token texts (e.g. "<|im_start|>") in text.
    // User-defined tokens are split out even without parse_special (HF added-token rule).
    // Thread-safe (const, no caches mutated).
    virtual std::vector<token_id> tokenize(std::string_view text, bool add_special, bool parse_special) const = 0;

    // Concatenated pieces. remove_special drops BOS/EOS/control tokens from the text;
    // unparse_special renders control tokens as their text.
    // As in llama.cpp, with add_space_prefix (SPM) the first token's piece loses one leading
    // space (the dummy prefix); when the ids start with BOS that first token is the BOS, so
    // the space stays. Unlike llama.cpp, no "clean up tokenization spaces" pass runs, so
    // detokenize(tokenize(s, false, false)) == s.
    virtual std::string detokenize(const std::vector<token_id>& ids, bool remove_special = false,
                                   bool unparse_special = true) const = 0;
    // Text of one token as it would appear in generated output (bytes may be a partial UTF-8 sequence).
    virtual std::string token_to_piece(token_id id, bool unparse_special = true) const = 0;

    virtual int32_t n_tokens() const = 0;
    virtual std::string type_name() const = 0;   // "spm", "bpe", ...
    virtual std::string pre_name() const = 0;    // tokenizer.ggml.pre ("" when absent)
    virtual token_id bos() const = 0;            // -1 when none
    virtual token_id eos() const = 0;            // -1 when none
    virtual bool is_eog(token_id id) const = 0;  // end of generation (EOS, EOT, <|im_end|>, ...)
    virtual bool is_control(token_id id) const = 0;
    virtual const std::string& token_text(token_id id) const = 0;  // raw vocab entry
    // token id for an exact vocab entry text, -1 when absent (used for image markers etc.)
    virtual token_id find(std::string_view text) const = 0;
};

}  // namespace corehead
