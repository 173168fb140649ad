// Key/value cache, head-grouped: per layer K and V are [head_dim, n_ctx, n_head_kv], so each
// KV head's tokens are contiguous. Flash attention reads a [head_dim, n_kv, n_head_kv] view
// directly, and the CoRe-sparse path (docs/architecture.md §6) can later keep different token sets per
// head group without copying weights.
#pragma once
#include <cstdint>
#include <vector>

#include "ggml.h"

struct ggml_backend_buffer;
typedef struct ggml_backend* ggml_backend_t;

namespace corehead {

class KVCache {
public:
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, ggml_type type,
            ggml_backend_t backend);
    ~KVCache();
    KVCache(const KVCache&) = delete;
    KVCache& operator=(const KVCache&) = delete;

    int64_t n_ctx() const { return n_ctx_; }
    size_t nbytes() const;
    ggml_type type() const { return type_; }

    // Graph nodes that write `k_cur` / `v_cur` ([head_dim, n_head_kv, n_tokens]) at position `pos`.
    ggml_tensor* store_k(ggml_context* ctx, int64_t layer, ggml_tensor* k_cur, int64_t pos) const;
    ggml_tensor* store_v(ggml_context* ctx, int64_t layer, ggml_tensor* v_cur, int64_t pos) const;
    // Views of the first n_kv positions: [head_dim, n_kv, n_head_kv].
    ggml_tensor* view_k(ggml_context* ctx, int64_t layer, int64_t n_kv) const;
    ggml_tensor* view_v(ggml_context* ctx, int64_t layer, int64_t n_kv) const;

private:
    ggml_tensor* store(ggml_context* ctx, ggml_tensor* cache, ggml_tensor* cur, int64_t pos) const;
    ggml_tensor* view(ggml_context* ctx, ggml_tensor* cache, int64_t n_kv) const;
    int64_t n_ctx_;
    ggml_type type_;
    ggml_context* ctx_ = nullptr;
    ggml_backend_buffer* buffer_ = nullptr;
    std::vector<ggml_tensor*> k_, v_;
};

}  // namespace corehead
