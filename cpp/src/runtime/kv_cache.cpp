#include "runtime/kv_cache.h"

#include <utility>

#include "corehead/error.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"

namespace corehead {

ggml_tensor* kv_store(ggml_context* ctx, ggml_tensor* cache, ggml_tensor* cur, int64_t slot) {
    const int64_t hd = cur->ne[0], n_heads = cur->ne[1], n_tokens = cur->ne[2];
    // [hd, n_heads, n_tokens] -> [hd, n_tokens, n_heads] to match the head-grouped layout.
    ggml_tensor* src = ggml_permute(ctx, cur, 0, 2, 1, 3);
    ggml_tensor* dst = ggml_view_3d(ctx, cache, hd, n_tokens, n_heads, cache->nb[1], cache->nb[2], slot * cache->nb[1]);
    return ggml_cpy(ctx, src, dst);
}

ggml_tensor* kv_view(ggml_context* ctx, ggml_tensor* cache, int64_t n) {
    return ggml_view_3d(ctx, cache, cache->ne[0], n, cache->ne[2], cache->nb[1], cache->nb[2], 0);
}

BackendTensors::BackendTensors(ggml_backend_t backend, size_t n_tensors, const std::function<void(ggml_context*)>& make,
                               const std::string& what) {
    ggml_init_params params{};
    params.mem_size = (n_tensors + 1) * ggml_tensor_overhead();
    params.no_alloc = true;
    ctx_ = ggml_init(params);
    make(ctx_);
    buffer_ = ggml_backend_alloc_ctx_tensors(ctx_, backend);
    if (!buffer_) {
        release();
        throw Error("could not allocate " + what + "; try a smaller n_ctx");
    }
    ggml_backend_buffer_clear(buffer_, 0);
}

BackendTensors::~BackendTensors() { release(); }

BackendTensors::BackendTensors(BackendTensors&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)), buffer_(std::exchange(o.buffer_, nullptr)) {}

BackendTensors& BackendTensors::operator=(BackendTensors&& o) noexcept {
    if (this != &o) {
        release();
        ctx_ = std::exchange(o.ctx_, nullptr);
        buffer_ = std::exchange(o.buffer_, nullptr);
    }
    return *this;
}

void BackendTensors::release() {
    if (buffer_) ggml_backend_buffer_free(buffer_);
    if (ctx_) ggml_free(ctx_);
    buffer_ = nullptr;
    ctx_ = nullptr;
}

size_t BackendTensors::nbytes() const { return buffer_ ? ggml_backend_buffer_get_size(buffer_) : 0; }

void BackendTensors::clear() {
    if (buffer_) ggml_backend_buffer_clear(buffer_, 0);
}

KVCache::KVCache(const TextHParams& hp, int64_t n_ctx, ggml_type type, ggml_backend_t backend)
    : n_ctx_(n_ctx), type_(type) {
    tensors_ = BackendTensors(backend, static_cast<size_t>(2 * hp.n_layer), [&](ggml_context* ctx) {
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            if (hp.is_recurrent(l)) {  // hybrid models (qwen35): no attention, hence no K/V
                k_.push_back(nullptr);
                v_.push_back(nullptr);
                continue;
            }
            if (!hp.owns_kv(l)) {  // shared: the source layer (an earlier one) already has its tensors
                k_.push_back(k_[hp.kv_layer(l)]);
                v_.push_back(v_[hp.kv_layer(l)]);
                continue;
            }
            k_.push_back(ggml_new_tensor_3d(ctx, type, hp.head_k(l), n_ctx, hp.n_head_kv));
            v_.push_back(ggml_new_tensor_3d(ctx, type, hp.head_v(l), n_ctx, hp.n_head_kv));
        }
    }, "the KV cache (" + std::to_string(n_ctx) + " tokens)");
}

}  // namespace corehead
