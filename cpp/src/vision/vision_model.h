// Opening and validating an mmproj GGUF (vision encoder + projector; no weights read).
#pragma once
#include <memory>
#include <string>

#include "corehead/engine.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/hparams.h"

namespace corehead {

struct VisionModelFile {
    std::unique_ptr<GgufFile> file;
    const VisionFamily* family = nullptr;
    VisionHParams hp;
    std::string name;
    int64_t file_type = -1;
};

// Throws FileNotFound / ModelError.
VisionModelFile open_mmproj(const std::string& path);

// What `corehead info` and Engine.info report about the file.
VisionInfo vision_info(const VisionModelFile& m);

}  // namespace corehead
