// Checks a GGUF's tensors against what a model family expects, before any graph exists.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace corehead {

class GgufFile;

struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;  // ggml order (ne0 = row length); empty = any shape
    bool required = true;
};

// Every required tensor present, every present tensor known, shapes equal, vectors
// (norms, biases) stored as F32 and matrices in a float or quantized type.
// Throws ModelError naming the file, the tensor and what was expected.
void check_tensors(const GgufFile& file, const std::vector<TensorSpec>& specs);

}  // namespace corehead
