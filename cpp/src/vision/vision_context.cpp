#include "vision/vision_context.h"

#include <string>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"
#include "vision/graph.h"

namespace corehead {

namespace {
constexpr size_t kGraphSize = 16384;
}

VisionContext::VisionContext(const VisionFamily& family, const VisionHParams& hp, const Weights& w, const Backends& b)
    : family_(family), hp_(hp), w_(w) {
    ggml_backend_t list[2] = {b.main, b.cpu};
    const int n = b.main == b.cpu ? 1 : 2;
    sched_ = ggml_backend_sched_new(list, nullptr, n, kGraphSize, false, true);
    graph_mem_.resize(ggml_tensor_overhead() * kGraphSize + ggml_graph_overhead_custom(kGraphSize, false));
}

VisionContext::~VisionContext() {
    if (sched_) ggml_backend_sched_free(sched_);
}

std::vector<float> VisionContext::encode(const VisionView& view) {
    if (view.width <= 0 || view.height <= 0 || view.width % hp_.patch_size || view.height % hp_.patch_size ||
        static_cast<int64_t>(view.pixels.size()) != 3 * view.width * view.height) {
        throw Error("internal error: malformed vision view");
    }
    ggml_init_params params{};
    params.mem_size = graph_mem_.size();
    params.mem_buffer = graph_mem_.data();
    params.no_alloc = true;
    ggml_context* ctx = ggml_init(params);
    ggml_cgraph* gf = ggml_new_graph_custom(ctx, kGraphSize, false);
    VisionGraph g(ctx, gf, hp_, w_, view);
    ggml_tensor* out = family_.build(g);
    const int64_t n_tokens = view.grid_w * view.grid_h;
    if (out->ne[0] != hp_.n_out || out->ne[1] != n_tokens) {
        ggml_free(ctx);
        throw Error("internal error: the vision graph produced [" + std::to_string(out->ne[0]) + ", " +
                    std::to_string(out->ne[1]) + "], expected [" + std::to_string(hp_.n_out) + ", " +
                    std::to_string(n_tokens) + "]");
    }
    out = ggml_cont(ctx, out);
    ggml_set_output(out);
    ggml_build_forward_expand(gf, out);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) {
        ggml_free(ctx);
        throw Error("could not allocate compute buffers for the vision encoder");
    }
    g.set_inputs();
    const ggml_status st = ggml_backend_sched_graph_compute(sched_, gf);
    if (st != GGML_STATUS_SUCCESS) {
        ggml_free(ctx);
        throw Error(st == GGML_STATUS_ABORTED ? "computation interrupted" : "ggml graph computation failed (vision)");
    }
    std::vector<float> result(static_cast<size_t>(ggml_nelements(out)));
    ggml_backend_tensor_get(out, result.data(), 0, result.size() * sizeof(float));
    ggml_free(ctx);
    return result;
}

}  // namespace corehead
