// A GGUF's tensors loaded into one backend buffer, each in its stored (possibly
// quantized) type: ggml kernels do the math on them directly.
#pragma once
#include <cstddef>
#include <string>

struct ggml_context;
struct ggml_tensor;
struct ggml_backend_buffer;
typedef struct ggml_backend* ggml_backend_t;

namespace corehead {

class GgufFile;

class Weights {
public:
    // Reads every tensor of `file` into a buffer of `backend`. Throws ModelError on I/O errors.
    Weights(const GgufFile& file, ggml_backend_t backend);
    ~Weights();
    Weights(const Weights&) = delete;
    Weights& operator=(const Weights&) = delete;

    ggml_tensor* find(const std::string& name) const;  // nullptr when absent
    ggml_tensor* get(const std::string& name) const;   // throws ModelError when absent
    size_t nbytes() const;
    int64_t n_params() const;

private:
    void release();
    std::string path_;
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer* buffer_ = nullptr;
};

}  // namespace corehead
