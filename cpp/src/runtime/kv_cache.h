// Key/value storage, head-grouped: per layer K and V are [head_dim, slots, n_kv_heads], so each
// KV head's tokens are contiguous. Flash attention reads a [head_dim, n_kv, n_kv_heads] view
// directly, and the CoRe-sparse cache (runtime/sparse_kv.h, docs/architecture.md §6) keeps
// different token sets per head group in the same layout. kv_store / kv_view are the one
// write/read path of both caches.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ggml.h"
#include "text/hparams.h"

struct ggml_backend_buffer;
typedef struct ggml_backend* ggml_backend_t;

namespace corehead {

// Graph node that writes `cur` ([head_dim, n_heads, n_tokens]) into `cache` at slot `slot`.
ggml_tensor* kv_store(ggml_context* ctx, ggml_tensor* cache, ggml_tensor* cur, int64_t slot);
// View of the first n slots of `cache`: [head_dim, n, n_heads].
ggml_tensor* kv_view(ggml_context* ctx, ggml_tensor* cache, int64_t n);

// Tensors created by `make` in their own context, allocated in one zeroed backend buffer.
// Throws Error("could not allocate <what> ...; try a smaller n_ctx") when the backend is full.
class BackendTensors {
public:
    BackendTensors() = default;
    BackendTensors(ggml_backend_t backend, size_t n_tensors, const std::function<void(ggml_context*)>& make,
                   const std::string& what);
    ~BackendTensors();
    BackendTensors(BackendTensors&& o) noexcept;
    BackendTensors& operator=(BackendTensors&& o) noexcept;
    BackendTensors(const BackendTensors&) = delete;
    BackendTensors& operator=(const BackendTensors&) = delete;

    size_t nbytes() const;
    bool empty() const { return buffer_ == nullptr; }
    // Zeroes the buffer.
    void clear();

private:
    void release();
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer* buffer_ = nullptr;
};

// The dense cache: every KV head of every layer holds every token. Each layer's tensors have its
// own head sizes (hp.head_k / head_v); a layer that shares another layer's K/V (hp.kv_source,
// gemma4) gets no tensors of its own: k(layer) / v(layer) are its source layer's.
class KVCache {
public:
    // Recurrent layers of hybrid models (hp.is_recurrent, qwen35) have no K/V: k(l) is nullptr.
    KVCache(const TextHParams& hp, int64_t n_ctx, ggml_type type, ggml_backend_t backend);

    int64_t n_ctx() const { return n_ctx_; }
    size_t nbytes() const { return tensors_.nbytes(); }
    ggml_type type() const { return type_; }
    ggml_tensor* k(int64_t layer) const { return k_[layer]; }
    ggml_tensor* v(int64_t layer) const { return v_[layer]; }

private:
    int64_t n_ctx_;
    ggml_type type_;
    std::vector<ggml_tensor*> k_, v_;
    BackendTensors tensors_;
};

}  // namespace corehead
