// The registered text families (one definition per file in text/).
#pragma once

namespace corehead {
class TextFamily;
const TextFamily& llama_family();
const TextFamily& qwen2_family();
const TextFamily& qwen2vl_family();
const TextFamily& gemma3_family();
}  // namespace corehead
