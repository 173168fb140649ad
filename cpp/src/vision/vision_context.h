// Runs the vision encoder + projector of an mmproj on prepared views (own scheduler).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "vision/family.h"


namespace corehead {

struct Backends;
class GraphRunner;
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
    std::unique_ptr<GraphRunner> runner_;
};

}  // namespace corehead
