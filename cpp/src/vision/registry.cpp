// The vision projector families: the only place besides its own file where a family is named.
// Each X(name) is defined in vision/<file>.cpp as `const VisionFamily& name_family()`.
#include "vision/family.h"
#include "runtime/registry.h"

#define COREHEAD_VISION_FAMILIES(X) \
    X(llava_mlp)                    \
    X(idefics3)                     \
    X(qwen2vl_merger)               \
    X(qwen25vl_merger)              \
    X(qwen3vl_merger)               \
    X(gemma3_vision)                \
    X(gemma4_vision)                \
    X(pixtral)                      \
    X(internvl)

namespace corehead {

#define COREHEAD_DECLARE(name) const VisionFamily& name##_family();
COREHEAD_VISION_FAMILIES(COREHEAD_DECLARE)
#undef COREHEAD_DECLARE

namespace {

const std::vector<const VisionFamily*>& registry() {
#define COREHEAD_ENTRY(name) &name##_family(),
    static const std::vector<const VisionFamily*> families = {COREHEAD_VISION_FAMILIES(COREHEAD_ENTRY)};
#undef COREHEAD_ENTRY
    return families;
}

}  // namespace

const VisionFamily* find_vision_family(const std::string& projector) { return find_family(registry(), projector, &VisionFamily::projector); }

std::vector<std::string> supported_projectors() { return family_names(registry(), &VisionFamily::projector); }

}  // namespace corehead
