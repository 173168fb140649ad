// Runs the vision encoder + projector of an mmproj on prepared views (own scheduler).
#pragma once
#include <cstdint>
#include <vector>

#include "vision/family.h"

struct ggml_backend_sched;

namespace corehead {

struct Backends;
class Weights;

class VisionContext {
public:
    VisionContext(const VisionFamily& family, const VisionHParams& hp, const Weights& w, const Backends& backends);
    ~VisionContext();
    VisionContext(const VisionContext&) = delete;
    VisionContext& operator=(const VisionContext&) = delete;

    // Projector output of one view: row-major [grid_w * grid_h, n_out].
    std::vector<float> encode(const VisionView& view);

private:
    const VisionFamily& family_;
    const VisionHParams& hp_;
    const Weights& w_;
    ggml_backend_sched* sched_ = nullptr;
    std::vector<uint8_t> graph_mem_;
};

}  // namespace corehead
