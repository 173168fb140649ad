// Opening and validating an mmproj GGUF (vision encoder + projector; no weights read).
#pragma once
#include <memory>
#include <string>

#include "corehead/engine.h"
#include "gguf/file_info.h"
#include "vision/family.h"
#include "vision/hparams.h"

namespace corehead {

struct VisionModelFile : ModelFile<VisionFamily, VisionHParams> {};

// Throws FileNotFound / ModelError.
VisionModelFile open_mmproj(const std::string& path);

// What `corehead info` and Engine.info report about the file.
VisionInfo vision_info(const VisionModelFile& m);

}  // namespace corehead
