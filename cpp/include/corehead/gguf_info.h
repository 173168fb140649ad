// What a GGUF file holds, from its header alone (no tensor data is read): the layout of the
// tensor-data region and every tensor's type and shape. corehead.memory_estimate reads its
// numbers here, so the GGUF format is parsed in one place (gguf/gguf_file.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace corehead {

struct GgufTensorInfo {
    std::string name;
    std::string type;            // ggml type name, e.g. "q4_K", "f16"
    std::vector<int64_t> shape;  // ggml order (ne[0] first), n_dims entries
    uint64_t offset = 0;         // from the start of the tensor-data region
    uint64_t n_bytes = 0;
};

struct GgufSummary {
    std::string path;
    uint32_t version = 0;
    uint64_t file_size = 0;
    uint64_t alignment = 0;      // general.alignment (32 by default)
    uint64_t data_offset = 0;    // where the tensor-data region starts
    uint64_t data_size = 0;      // file_size - data_offset: what the engine loads as weights
    std::vector<GgufTensorInfo> tensors;
};

// Opens and checks a GGUF file (any architecture). Throws FileNotFound / ModelError.
GgufSummary gguf_summary(const std::string& path);

// The largest single input of an mmproj's vision encoder: the view of most patches its
// preprocessing makes from a square image as large as it takes without scaling it down (fixed-size
// encoders: the trained square; tiling, idefics3: a tile; dynamic resolution, Qwen-VL: about
// image_max_pixels). Views are encoded one at a time, so this bounds the encoder's compute.
struct VisionInput {
    int64_t width = 0, height = 0;  // pixels of the view
    int64_t n_patches = 0;          // encoder sequence length (a class token included)
};

// Validates the file as inspect_mmproj does. Throws FileNotFound / ModelError.
VisionInput largest_vision_input(const std::string& mmproj_path);

}  // namespace corehead
