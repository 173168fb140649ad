// The registered vision projector families (one definition per file in vision/).
#pragma once

namespace corehead {
class VisionFamily;
const VisionFamily& llava_mlp_family();
const VisionFamily& idefics3_family();
const VisionFamily& qwen2vl_merger_family();
const VisionFamily& qwen25vl_merger_family();
const VisionFamily& gemma3_vision_family();
}  // namespace corehead
