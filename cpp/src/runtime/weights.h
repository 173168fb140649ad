// A GGUF's tensors loaded into one backend buffer, each in its stored (possibly
// quantized) type: ggml kernels do the math on them directly.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

struct ggml_context;
struct ggml_tensor;
struct ggml_backend_buffer;
typedef struct ggml_backend* ggml_backend_t;

namespace corehead {

class GgufFile;

class Weights {
public:
    // Reads every tensor of `file` into a buffer of `backend`. Throws ModelError on I/O errors.
    // `matmul_only(name)` says a tensor is used only as the weight of ggml_mul_mat: on the CPU
    // those go to ggml's repack buffer (interleaved layouts with faster kernels, as llama.cpp
    // does) when a kernel exists for their type, except the K-/i-quant types ggml's tiled matmul
    // prefills faster from the plain layout (tiled_matmul_takes in weights.cpp). Others (e.g.
    // embeddings read by get_rows) stay plain.
    Weights(const GgufFile& file, ggml_backend_t backend,
            const std::function<bool(const std::string&)>& matmul_only = nullptr);
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
    ggml_context* ctx_ = nullptr;        // tensors in the backend's default buffer
    ggml_context* ctx_extra_ = nullptr;  // tensors in the CPU repack buffer
    std::vector<ggml_backend_buffer*> buffers_;
    std::unordered_map<std::string, ggml_tensor*> by_name_;
};

}  // namespace corehead
