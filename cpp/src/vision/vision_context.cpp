#include "vision/vision_context.h"

#include <string>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"
#include "runtime/graph_runner.h"
#include "vision/graph.h"

namespace corehead {

namespace {
constexpr size_t kGraphSize = 16384;
}

VisionContext::VisionContext(const VisionFamily& family, const VisionHParams& hp, const Weights& w, const Backends& b)
    : family_(family), hp_(hp), w_(w), runner_(std::make_unique<GraphRunner>(b, kGraphSize, "vision")) {}

VisionContext::~VisionContext() = default;

std::vector<float> VisionContext::encode(const VisionView& view) {
    if (view.width <= 0 || view.height <= 0 || view.width % hp_.patch_size || view.height % hp_.patch_size ||
        static_cast<int64_t>(view.pixels.size()) != 3 * view.width * view.height ||
        (!view.pixels_next.empty() && view.pixels_next.size() != view.pixels.size())) {
        throw Error("internal error: malformed vision view");
    }
    GraphRunner::Graph graph = runner_->new_graph();
    VisionGraph g(graph.ctx.get(), graph.gf, hp_, w_, view);
    ggml_tensor* out = family_.build(g);
    const int64_t n_tokens = view.grid_w * view.grid_h;
    if (out->ne[0] != hp_.n_out_total() || out->ne[1] != n_tokens) {
        throw Error("internal error: the vision graph produced [" + std::to_string(out->ne[0]) + ", " +
                    std::to_string(out->ne[1]) + "], expected [" + std::to_string(hp_.n_out_total()) + ", " +
                    std::to_string(n_tokens) + "]");
    }
    out = ggml_cont(graph.ctx.get(), out);
    ggml_set_output(out);
    ggml_build_forward_expand(graph.gf, out);
    runner_->compute(graph.gf, [&g] { g.set_inputs(); }, "the vision encoder");
    return read_f32(out);
}

}  // namespace corehead
