#include "runtime/kv_cache.h"

#include "corehead/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

namespace corehead {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim_k, int64_t head_dim_v, ggml_type type,
                 ggml_backend_t backend)
    : n_ctx_(n_ctx), type_(type) {
    ggml_init_params params{};
    params.mem_size = static_cast<size_t>(2 * n_layer + 1) * ggml_tensor_overhead();
    params.no_alloc = true;
    ctx_ = ggml_init(params);
    for (int64_t l = 0; l < n_layer; ++l) {
        k_.push_back(ggml_new_tensor_3d(ctx_, type, head_dim_k, n_ctx, n_head_kv));
        v_.push_back(ggml_new_tensor_3d(ctx_, type, head_dim_v, n_ctx, n_head_kv));
    }
    buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    if (!buffer_) {
        ggml_free(ctx_);
        throw Error("could not allocate the KV cache (" + std::to_string(n_ctx) + " tokens); try a smaller n_ctx");
    }
    ggml_backend_buffer_clear(buffer_, 0);
}

KVCache::~KVCache() {
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
}

size_t KVCache::nbytes() const { return ggml_backend_buffer_get_size(buffer_); }

ggml_tensor* KVCache::store(ggml_context* ctx, ggml_tensor* cache, ggml_tensor* cur, int64_t pos) const {
    const int64_t hd = cur->ne[0], n_head_kv = cur->ne[1], n_tokens = cur->ne[2];
    // [hd, n_head_kv, n_tokens] -> [hd, n_tokens, n_head_kv] to match the head-grouped layout.
    ggml_tensor* src = ggml_permute(ctx, cur, 0, 2, 1, 3);
    ggml_tensor* dst = ggml_view_3d(ctx, cache, hd, n_tokens, n_head_kv, cache->nb[1], cache->nb[2], pos * cache->nb[1]);
    return ggml_cpy(ctx, src, dst);
}

ggml_tensor* KVCache::view(ggml_context* ctx, ggml_tensor* cache, int64_t n_kv) const {
    return ggml_view_3d(ctx, cache, cache->ne[0], n_kv, cache->ne[2], cache->nb[1], cache->nb[2], 0);
}

ggml_tensor* KVCache::store_k(ggml_context* ctx, int64_t l, ggml_tensor* k, int64_t pos) const { return store(ctx, k_[l], k, pos); }
ggml_tensor* KVCache::store_v(ggml_context* ctx, int64_t l, ggml_tensor* v, int64_t pos) const { return store(ctx, v_[l], v, pos); }
ggml_tensor* KVCache::view_k(ggml_context* ctx, int64_t l, int64_t n_kv) const { return view(ctx, k_[l], n_kv); }
ggml_tensor* KVCache::view_v(ggml_context* ctx, int64_t l, int64_t n_kv) const { return view(ctx, v_[l], n_kv); }

}  // namespace corehead
