// The text families: the only place besides its own file where a family is named. Each
// X(name) is defined in text/<file>.cpp as `const TextFamily& name_family()`.
#include "text/family.h"
#include "runtime/registry.h"

#define COREHEAD_TEXT_FAMILIES(X) \
    X(llama)                      \
    X(qwen2)                      \
    X(qwen2vl)                    \
    X(qwen3)                      \
    X(qwen3vl)                    \
    X(qwen3vlmoe)                 \
    X(gemma3)                     \
    X(gemma4)                     \
    X(mistral3)                   \
    X(qwen35)                     \
    X(qwen35moe)

namespace corehead {

#define COREHEAD_DECLARE(name) const TextFamily& name##_family();
COREHEAD_TEXT_FAMILIES(COREHEAD_DECLARE)
#undef COREHEAD_DECLARE

namespace {

const std::vector<const TextFamily*>& registry() {
#define COREHEAD_ENTRY(name) &name##_family(),
    static const std::vector<const TextFamily*> families = {COREHEAD_TEXT_FAMILIES(COREHEAD_ENTRY)};
#undef COREHEAD_ENTRY
    return families;
}

}  // namespace

const TextFamily* find_text_family(const std::string& arch) { return find_family(registry(), arch, &TextFamily::arch); }

std::vector<std::string> supported_text_archs() { return family_names(registry(), &TextFamily::arch); }

}  // namespace corehead
