#include "runtime/graph_runner.h"

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"

namespace corehead {

GraphRunner::GraphRunner(const Backends& b, size_t graph_size) : graph_size_(graph_size) {
    ggml_backend_t list[2] = {b.main, b.cpu};
    const int n = b.main == b.cpu ? 1 : 2;
    sched_ = ggml_backend_sched_new(list, nullptr, n, graph_size, false, true);
    mem_.resize(ggml_tensor_overhead() * graph_size + ggml_graph_overhead_custom(graph_size, false));
}

GraphRunner::~GraphRunner() {
    if (sched_) ggml_backend_sched_free(sched_);
}

GraphRunner::Graph GraphRunner::new_graph() {
    ggml_init_params params{};
    params.mem_size = mem_.size();
    params.mem_buffer = mem_.data();
    params.no_alloc = true;
    Graph g{{ggml_init(params), ggml_free}, nullptr};
    g.gf = ggml_new_graph_custom(g.ctx.get(), graph_size_, false);
    return g;
}

void GraphRunner::compute(ggml_cgraph* gf, const std::function<void()>& set_inputs, const std::string& what,
                          bool new_plan) {
    ggml_backend_sched_reset(sched_);
    if (new_plan && !ggml_backend_sched_reserve(sched_, gf)) throw Error("could not allocate compute buffers for " + what);
    ggml_backend_sched_reset(sched_);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) throw Error("could not allocate compute buffers for " + what);
    set_inputs();
    const ggml_status st = ggml_backend_sched_graph_compute(sched_, gf);
    if (st != GGML_STATUS_SUCCESS) {
        throw Error(st == GGML_STATUS_ABORTED ? "computation interrupted" : "ggml graph computation failed (" + what + ")");
    }
}

std::vector<float> read_f32(const ggml_tensor* t) {
    std::vector<float> out(static_cast<size_t>(ggml_nelements(t)));
    ggml_backend_tensor_get(t, out.data(), 0, out.size() * sizeof(float));
    return out;
}

}  // namespace corehead
