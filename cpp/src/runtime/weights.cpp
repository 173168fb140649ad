#include "runtime/weights.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

#include "corehead/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "runtime/backend.h"

namespace corehead {

namespace {

// pread until `size` bytes are read; false on error or early EOF.
bool read_exact(int fd, void* dst, size_t size, uint64_t offset) {
    char* p = static_cast<char*>(dst);
    while (size > 0) {
        const size_t chunk = std::min<size_t>(size, size_t(1) << 30);
        const ssize_t n = ::pread(fd, p, chunk, static_cast<off_t>(offset));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        size -= static_cast<size_t>(n);
        offset += static_cast<uint64_t>(n);
    }
    return true;
}

// The CPU backend's extra buffer type that repacks matrices (nullptr when there is none).
ggml_backend_buffer_type_t repack_buffer_type(ggml_backend_t backend) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    if (!dev || ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) return nullptr;
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    auto get_extra = reinterpret_cast<ggml_backend_dev_get_extra_bufts_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts"));
    if (!get_extra) return nullptr;
    for (ggml_backend_buffer_type_t* b = get_extra(dev); b && *b; ++b) {
        if (std::string(ggml_backend_buft_name(*b)).find("REPACK") != std::string::npos) return *b;
    }
    return nullptr;
}

// Whether ggml's CPU "tiled" matmul (ggml-cpu/tiled) computes prompt batches for weights of this
// type. It takes K-quant and i-quant weights in batches of 8 rows or more (AVX/AVX2/AVX512-VNNI
// micro-kernels), but only plain ones: a weight in the repack buffer goes to the repack kernels
// instead, which prefill at about 0.7x the tiled path (llama-bench pp512 on Qwen3-1.7B-shaped
// Q4_K_M, --repack 1 vs 0; corehead 0.63x llama.cpp before these types stayed plain).
// GGML_CPU_TILED_MM=0 turns the tiled path off in ggml; the repack buffer is then the faster.
bool tiled_matmul_takes(ggml_type type) {
    if (!cpu_feature("AVX") && !cpu_feature("AVX2") && !cpu_feature("AVX512_VNNI")) return false;
    const char* env = std::getenv("GGML_CPU_TILED_MM");
    if (env && std::atoi(env) == 0) return false;
    switch (type) {  // ggml_tiled_supported's list (ggml-cpu/tiled/tiled.cpp)
        case GGML_TYPE_Q6_K:
        case GGML_TYPE_Q5_K:
        case GGML_TYPE_Q4_K:
        case GGML_TYPE_Q3_K:
        case GGML_TYPE_Q2_K:
        case GGML_TYPE_IQ4_XS:
        case GGML_TYPE_IQ2_XXS:
        case GGML_TYPE_IQ2_XS:
        case GGML_TYPE_IQ2_S:
        case GGML_TYPE_IQ3_XXS:
        case GGML_TYPE_IQ3_S:
        case GGML_TYPE_IQ1_S:
        case GGML_TYPE_IQ1_M:
            return true;
        default:
            return false;
    }
}

// Whether `buft` has a mul_mat kernel for a weight shaped and typed like `w`.
bool buft_supports_matmul(ggml_backend_buffer_type_t buft, ggml_backend_t backend, const ggml_tensor* w) {
    ggml_init_params params{};
    params.mem_size = 4 * ggml_tensor_overhead();
    params.no_alloc = true;
    ggml_context* ctx = ggml_init(params);
    ggml_tensor* a = ggml_new_tensor_2d(ctx, w->type, w->ne[0], w->ne[1]);
    ggml_tensor* b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, w->ne[0], 8);
    ggml_tensor* op = ggml_mul_mat(ctx, a, b);
    ggml_backend_buffer_t dummy = ggml_backend_buft_alloc_buffer(buft, 0);
    a->buffer = dummy;
    const bool ok = ggml_backend_dev_supports_op(ggml_backend_get_device(backend), op);
    ggml_backend_buffer_free(dummy);
    ggml_free(ctx);
    return ok;
}

}  // namespace

Weights::Weights(const GgufFile& file, ggml_backend_t backend, const std::function<bool(const std::string&)>& matmul_only)
    : path_(file.path()) {
    const int64_t n = file.n_tensors();
    ggml_init_params params{};
    params.mem_size = static_cast<size_t>(n + 1) * ggml_tensor_overhead();
    params.no_alloc = true;
    ctx_ = ggml_init(params);
    ctx_extra_ = ggml_init(params);
    if (!ctx_ || !ctx_extra_) {
        release();
        throw Error("out of memory creating the weight context");
    }

    ggml_backend_buffer_type_t repack = matmul_only ? repack_buffer_type(backend) : nullptr;
    for (const auto& name : file.tensor_names()) {
        const ggml_tensor* meta = file.find_tensor(name);
        const bool extra = repack && ggml_n_dims(meta) == 2 && matmul_only(name) && !tiled_matmul_takes(meta->type) &&
                           buft_supports_matmul(repack, backend, meta);
        ggml_tensor* t = ggml_dup_tensor(extra ? ctx_extra_ : ctx_, meta);
        ggml_set_name(t, name.c_str());
        by_name_[name] = t;
    }
    if (n == 0) return;
    for (auto [ctx, buft] : {std::pair{ctx_, ggml_backend_get_default_buffer_type(backend)}, std::pair{ctx_extra_, repack}}) {
        if (!ggml_get_first_tensor(ctx)) continue;
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft);
        if (!buf) {
            release();
            throw Error(path_ + ": could not allocate memory for the weights");
        }
        ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        buffers_.push_back(buf);
    }

    const int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) {
        release();
        throw ModelError(path_ + ": cannot open: " + std::strerror(errno));
    }
    std::vector<char> staging;
    std::string failed;
    for (const auto& [name, t] : by_name_) {
        const size_t size = ggml_nbytes(t);
        const uint64_t offset = file.tensor_file_offset(name);
        if (ggml_backend_buffer_is_host(t->buffer)) {
            if (!read_exact(fd, t->data, size, offset)) { failed = name; break; }
        } else {
            // Non-host buffers (GPU, or the CPU repack buffer which re-lays the data out) take a copy.
            staging.resize(size);
            if (!read_exact(fd, staging.data(), size, offset)) { failed = name; break; }
            ggml_backend_tensor_set(t, staging.data(), 0, size);
        }
    }
    ::close(fd);
    if (!failed.empty()) {
        release();
        throw ModelError(path_ + ": could not read the data of tensor '" + failed + "' (file changed or truncated?)");
    }
}

Weights::~Weights() { release(); }

void Weights::release() {
    for (auto* b : buffers_) ggml_backend_buffer_free(b);
    buffers_.clear();
    if (ctx_) ggml_free(ctx_);
    if (ctx_extra_) ggml_free(ctx_extra_);
    ctx_ = ctx_extra_ = nullptr;
    by_name_.clear();
}

ggml_tensor* Weights::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

ggml_tensor* Weights::get(const std::string& name) const {
    ggml_tensor* t = find(name);
    if (!t) throw ModelError(path_ + ": missing tensor '" + name + "'");
    return t;
}

size_t Weights::nbytes() const {
    size_t total = 0;
    for (auto* b : buffers_) total += ggml_backend_buffer_get_size(b);
    return total;
}

int64_t Weights::n_params() const {
    int64_t total = 0;
    for (const auto& [name, t] : by_name_) total += ggml_nelements(t);
    return total;
}

}  // namespace corehead
