// Builds and runs one ggml graph at a time on the engine's backends: owns the scheduler and
// the memory graph metadata lives in. Shared by the decoder (TextContext) and the vision
// encoder (VisionContext).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ggml.h"

struct ggml_backend_sched;

namespace corehead {

struct Backends;

class GraphRunner {
public:
    // part: what the graphs compute ("text", "vision"), the key of Backends::placement.
    GraphRunner(const Backends& backends, size_t graph_size, std::string part);
    ~GraphRunner();
    GraphRunner(const GraphRunner&) = delete;
    GraphRunner& operator=(const GraphRunner&) = delete;

    // A fresh metadata-only context and an empty graph in the runner's memory; the context is
    // freed when the returned handle goes away (also when graph building throws).
    struct Graph {
        std::unique_ptr<ggml_context, void (*)(ggml_context*)> ctx;
        ggml_cgraph* gf;
    };
    Graph new_graph();

    // Allocates `gf` on the scheduler, calls set_inputs() to upload the inputs, computes.
    // Throws Error naming `what` when allocation or computation fails.
    // `new_plan`: plan the buffers for this graph from scratch. ggml's allocator reuses the previous
    // graph's plan when the node and leaf counts match and every node's sources still fit, but it
    // places leaves by index: two graphs whose masks sit at swapped places (knockout on another
    // layer) pass that check, and a leaf then lands in a slot sized for another (NaN logits).
    void compute(ggml_cgraph* gf, const std::function<void()>& set_inputs, const std::string& what,
                 bool new_plan = false);

private:
    void reserve(ggml_cgraph* gf, const std::string& what);  // new_plan, leaving gf as it was
    void record_placement(ggml_cgraph* gf);

    const Backends& backends_;
    std::string part_;
    size_t graph_size_;
    ggml_backend_sched* sched_ = nullptr;
    int placed_nodes_ = -1;  // nodes of the graph record_placement saw last
    std::vector<uint8_t> mem_;
};

// A computed f32 tensor's data on the host.
std::vector<float> read_f32(const ggml_tensor* t);

}  // namespace corehead
