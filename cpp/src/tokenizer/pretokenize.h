// Pre-tokenizers of byte-level BPE vocabularies: split text into words before BPE merges,
// following the regex(es) that `tokenizer.ggml.pre` names. Each regex is a hand-written
// matcher (no regex engine); several regexes run in sequence, each one splitting the
// pieces the previous one produced (matches and the gaps between them both become pieces).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace corehead::pretok {

// One regex of a pre-tokenizer pipeline.
enum class Stage {
    Gpt2,          // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
    Llama3,        // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    Qwen2,         // Llama3 with \p{N} (one digit per word)
    Qwen35,        // Qwen2 where letter runs also take marks: [\p{L}\p{M}]+
    Llama3AllDigits,   // Llama3 with \p{N}+ (minicpm5, after a DigitsUpTo3 stage)
    Qwen2NoContractions,  // Qwen2 without the 's|'t... group (ufakzeka)
    Tekken,        // [^\r\n\p{L}\p{N}]?U*W+|[^\r\n\p{L}\p{N}]?U+W*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
                   //   (Mistral Nemo / Small 3.x; U = a letter but a-z, W = a letter but A-Z, as llama.cpp writes it)
    Newlines,      // [^\n]+|[\n]+
    DigitEach,     // \p{N}
    DigitRun,      // \p{N}+
    DigitsUpTo3,   // \p{N}{1,3}
    AsciiDigits3,  // [0-9][0-9][0-9]
    PunctRun,      // [\p{P}\$\+<=>\^~\|]+
    PunctRunFalcon,    // [\p{P}\$\+<=>\^~\|`]+
    CrOrLf,        // [\r\n]
    TrailingSpace,     // \s+$
    SpaceOptLetters,   // \s?\p{L}+
    SpaceOptPunct,     // \s?\p{P}+
    DeepseekLatin,     // \s?[A-Za-zµÀ-ÖØ-öø-ƺ...]+   (deepseek-llm's explicit letter class)
    DeepseekPunct,     // \s?[!-/:-~！-／：-～‘-‟　-。]+
    DeepseekCjk,       // [一-龥ࠀ-一가-퟿]+
};

struct Config {
    std::vector<Stage> stages;
    bool byte_encode = true;        // GPT-2 byte->unicode mapping of the words
    bool ignore_merges = false;     // a word that is itself a token is emitted whole
    bool add_bos_default = false;   // default for add_bos before the GGUF flag overrides it
    bool escape_whitespace = false; // ' ' -> U+2581 before splitting (SPM-style BPE, gemma4)
    bool no_bos = false;            // the family has no BOS token (chatglm)
};

// Looks up the pre-tokenizer by its GGUF name; false when the name is unknown or its
// regexes are not implemented here.
bool config_for(const std::string& pre_name, Config& out);

// Splits code points into words; returns (begin, end) index pairs into `cpts`.
std::vector<std::pair<size_t, size_t>> split(const std::vector<uint32_t>& cpts, const std::vector<Stage>& stages);

}  // namespace corehead::pretok
