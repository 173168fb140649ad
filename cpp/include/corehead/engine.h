// corehead's public C++ API: what a desktop app links against (libcorehead + ggml).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "corehead/error.h"

namespace corehead {

// Facts about a language-model GGUF.
struct TextInfo {
    std::string path;
    std::string arch;         // general.architecture
    std::string name;         // general.name
    std::string file_type;    // e.g. "Q4_K_M", "F16"
    int64_t n_layer = 0, n_head = 0, n_head_kv = 0, n_embd = 0, n_ff = 0, n_vocab = 0, n_ctx_train = 0;
    int64_t head_dim = 0;
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t file_size = 0;
    bool vocab_only = false;  // tokenizer-only file (no weights)
    std::string tokenizer;    // tokenizer.ggml.model ("llama" = SentencePiece, "gpt2" = byte-level BPE)
    std::string tokenizer_pre;
    int64_t n_tokens = 0;     // tokens in the tokenizer
};

// Facts about an mmproj GGUF (vision encoder + projector).
struct VisionInfo {
    std::string path;
    std::string projector;    // clip.projector_type
    std::string name;
    std::string file_type;
    int64_t image_size = 0, patch_size = 0, n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0;
    int64_t n_out = 0;        // embedding size the projector produces
    int64_t n_tensors = 0;
    int64_t n_params = 0;
    uint64_t file_size = 0;
};

// Validates a file without loading weights (works on vocab-only files). Throws
// FileNotFound / ModelError.
TextInfo inspect_model(const std::string& path);
VisionInfo inspect_mmproj(const std::string& path);

struct EngineOptions {
    std::string model;        // language-model GGUF
    std::string mmproj;       // optional vision projector GGUF ("" = text only)
    int n_threads = 0;        // 0 = automatic
    int64_t n_ctx = 4096;     // context window (tokens)
    std::string backend = "auto";
};

class Engine {
public:
    explicit Engine(const EngineOptions& options);  // loads weights; throws on any bad input
    ~Engine();
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    const TextInfo& text_info() const;
    const VisionInfo* vision_info() const;  // nullptr without an mmproj
    const std::string& backend_name() const;
    int n_threads() const;
    int64_t n_ctx() const;
    size_t weight_bytes() const;            // text + vision weights held in backend memory

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace corehead
