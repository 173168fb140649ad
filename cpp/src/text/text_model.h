// Opening and validating a language-model GGUF (no weights are read here).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "corehead/engine.h"
#include "gguf/file_info.h"
#include "text/family.h"
#include "text/hparams.h"

namespace corehead {

struct TextModelFile : ModelFile<TextFamily, TextHParams> {
    bool vocab_only = false;   // tokenizer + hparams, no tensors (llama.cpp's ggml-vocab-*.gguf)
    std::string tokenizer_model;  // tokenizer.ggml.model ("" when absent)
    std::string tokenizer_pre;    // tokenizer.ggml.pre
    int64_t n_tokens = 0;         // tokenizer.ggml.tokens count
    std::vector<int32_t> eog_tokens;  // eos / eot / eom ids declared in the metadata
};

// Throws FileNotFound / ModelError (wrong kind of file, unsupported arch, bad metadata,
// tensors that disagree with the hyper-parameters).
TextModelFile open_text_model(const std::string& path);

// What `corehead info` and Engine.info report about the file.
TextInfo text_info(const TextModelFile& m);

// Validates tokenizer.ggml.* structure (model type, array lengths, special ids in range).
void check_tokenizer_metadata(const GgufFile& f, int64_t n_vocab, std::string& model, std::string& pre, int64_t& n_tokens);

}  // namespace corehead
