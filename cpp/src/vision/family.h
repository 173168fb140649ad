// One vision projector family (clip.projector_type) behind one small interface; each
// family lives in its own file in vision/ and registers itself in family.cpp.
#pragma once
#include <string>
#include <vector>

#include "gguf/tensor_check.h"
#include "vision/hparams.h"

namespace corehead {

class VisionFamily {
public:
    virtual ~VisionFamily() = default;
    virtual const char* projector() const = 0;  // clip.projector_type value
    virtual void read_hparams(const GgufFile& f, VisionHParams& hp) const = 0;
    virtual std::vector<TensorSpec> tensor_specs(const GgufFile& f, const VisionHParams& hp) const = 0;
};

const VisionFamily* find_vision_family(const std::string& projector);
std::vector<std::string> supported_projectors();

// The ViT blocks shared by all families: attention with q/k/v/out projections, two
// norms and an MLP. `rms_norm` drops the norm biases, `gated_ffn` adds ffn_gate.
void add_vit_block_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool rms_norm, bool gated_ffn);

}  // namespace corehead
