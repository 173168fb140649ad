#include "runtime/weights.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

#include "corehead/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "gguf/gguf_file.h"

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

}  // namespace

Weights::Weights(const GgufFile& file, ggml_backend_t backend) : path_(file.path()) {
    const int64_t n = file.n_tensors();
    ggml_init_params params{};
    params.mem_size = static_cast<size_t>(n + 1) * ggml_tensor_overhead();
    params.no_alloc = true;
    ctx_ = ggml_init(params);
    if (!ctx_) throw Error("out of memory creating the weight context");

    for (const auto& name : file.tensor_names()) {
        ggml_tensor* t = ggml_dup_tensor(ctx_, file.find_tensor(name));
        ggml_set_name(t, name.c_str());
    }
    if (n == 0) return;
    buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    if (!buffer_) {
        release();
        throw Error(path_ + ": could not allocate memory for the weights");
    }
    ggml_backend_buffer_set_usage(buffer_, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);

    const int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) {
        release();
        throw ModelError(path_ + ": cannot open: " + std::strerror(errno));
    }
    const bool host = ggml_backend_buffer_is_host(buffer_);
    std::vector<char> staging;
    std::string failed;
    for (ggml_tensor* t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) {
        const size_t size = ggml_nbytes(t);
        const uint64_t offset = file.tensor_file_offset(t->name);
        if (host) {
            if (!read_exact(fd, t->data, size, offset)) { failed = t->name; break; }
        } else {
            staging.resize(size);
            if (!read_exact(fd, staging.data(), size, offset)) { failed = t->name; break; }
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
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
    buffer_ = nullptr;
    ctx_ = nullptr;
}

ggml_tensor* Weights::find(const std::string& name) const { return ggml_get_tensor(ctx_, name.c_str()); }

ggml_tensor* Weights::get(const std::string& name) const {
    ggml_tensor* t = find(name);
    if (!t) throw ModelError(path_ + ": missing tensor '" + name + "'");
    return t;
}

size_t Weights::nbytes() const { return buffer_ ? ggml_backend_buffer_get_size(buffer_) : 0; }

int64_t Weights::n_params() const {
    int64_t total = 0;
    for (ggml_tensor* t = ggml_get_first_tensor(ctx_); t; t = ggml_get_next_tensor(ctx_, t)) total += ggml_nelements(t);
    return total;
}

}  // namespace corehead
