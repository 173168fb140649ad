// Lookup in a family registry (text/registry.cpp, vision/registry.cpp).
#pragma once
#include <string>
#include <vector>

namespace corehead {

// The family whose `key()` (arch or projector name) equals `name`; nullptr when none does.
template <typename Family>
const Family* find_family(const std::vector<const Family*>& families, const std::string& name,
                          const char* (Family::*key)() const) {
    for (const Family* f : families) {
        if (name == (f->*key)()) return f;
    }
    return nullptr;
}

template <typename Family>
std::vector<std::string> family_names(const std::vector<const Family*>& families, const char* (Family::*key)() const) {
    std::vector<std::string> out;
    for (const Family* f : families) out.emplace_back((f->*key)());
    return out;
}

}  // namespace corehead
