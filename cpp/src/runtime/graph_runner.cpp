#include "runtime/graph_runner.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"

namespace corehead {

GraphRunner::GraphRunner(const Backends& b, size_t graph_size, std::string part)
    : backends_(b), part_(std::move(part)), graph_size_(graph_size) {
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
    if (new_plan) reserve(gf, what);
    if (!ggml_backend_sched_alloc_graph(sched_, gf)) throw Error("could not allocate compute buffers for " + what);
    if (new_plan || ggml_graph_n_nodes(gf) != placed_nodes_) record_placement(gf);
    set_inputs();
    const ggml_status st = ggml_backend_sched_graph_compute(sched_, gf);
    if (st != GGML_STATUS_SUCCESS) {
        throw Error(st == GGML_STATUS_ABORTED ? "computation interrupted" : "ggml graph computation failed (" + what + ")");
    }
}

void GraphRunner::reserve(ggml_cgraph* gf, const std::string& what) {
    // ggml_backend_sched_reserve splits the graph it is given in place: where a node reads a tensor
    // of another backend (every graph input on a GPU), the node's src is replaced by a copy that
    // lives in the scheduler's own context, which the next split (alloc_graph below) frees and
    // reuses. Splitting `gf` a second time then finds those stale copies as plain intermediates:
    // allocated, never uploaded, so a GPU kernel reads garbage (ids, masks). llama.cpp reserves on
    // a graph it throws away; here the sources are put back instead. A single backend (CPU) makes
    // no copies, which is why only the GPU runs saw it.
    const int n = ggml_graph_n_nodes(gf);
    std::vector<ggml_tensor*> srcs(static_cast<size_t>(n) * GGML_MAX_SRC);
    for (int i = 0; i < n; ++i) std::copy_n(ggml_graph_node(gf, i)->src, GGML_MAX_SRC, srcs.begin() + i * GGML_MAX_SRC);
    const bool ok = ggml_backend_sched_reserve(sched_, gf);
    for (int i = 0; i < n; ++i) std::copy_n(srcs.begin() + i * GGML_MAX_SRC, GGML_MAX_SRC, ggml_graph_node(gf, i)->src);
    ggml_backend_sched_reset(sched_);
    if (!ok) throw Error("could not allocate compute buffers for " + what);
}

void GraphRunner::record_placement(ggml_cgraph* gf) {
    // Which backend the scheduler gave each node: O(nodes), and only for a graph of another size
    // than the last one recorded (not every decode step).
    std::map<std::string, int64_t> nodes;
    std::set<std::string> cpu_ops;
    const bool gpu = backends_.main != backends_.cpu;
    for (int i = 0; i < ggml_graph_n_nodes(gf); ++i) {
        ggml_tensor* node = ggml_graph_node(gf, i);
        ggml_backend_t be = ggml_backend_sched_get_tensor_backend(sched_, node);
        if (!be) continue;  // views the scheduler did not need to place
        ++nodes[ggml_backend_name(be)];
        if (gpu && be == backends_.cpu) cpu_ops.insert(ggml_op_desc(node));
    }
    std::lock_guard<std::mutex> lock(backends_.placement_mutex);
    backends_.placement.nodes[part_] = std::move(nodes);
    backends_.placement.cpu_ops[part_].insert(cpu_ops.begin(), cpu_ops.end());
    placed_nodes_ = ggml_graph_n_nodes(gf);
}

std::vector<float> read_f32(const ggml_tensor* t) {
    std::vector<float> out(static_cast<size_t>(ggml_nelements(t)));
    ggml_backend_tensor_get(t, out.data(), 0, out.size() * sizeof(float));
    return out;
}

}  // namespace corehead
