#include "heads/head_index.h"

#include <string>

#include "corehead/error.h"

namespace corehead {

void check_index(const char* what, int64_t i, int64_t n) {
    if (i < 0 || i >= n) {
        throw InputError(std::string(what) + " " + std::to_string(i) + " is out of range [0, " + std::to_string(n) + ")");
    }
}

void check_head_layer(int64_t layer, int64_t n_layer, const std::vector<bool>& recurrent) {
    check_layer(layer, n_layer);
    if (layer >= static_cast<int64_t>(recurrent.size()) || !recurrent[layer]) return;
    std::string heads;
    for (int64_t l = 0; l < n_layer; ++l) {
        if (l < static_cast<int64_t>(recurrent.size()) && recurrent[l]) continue;
        heads += (heads.empty() ? "" : ", ") + std::to_string(l);
    }
    throw InputError("layer " + std::to_string(layer) + " is a Gated DeltaNet (linear attention) layer: it has no "
                     "attention heads; this model's heads are in layers " + heads);
}

}  // namespace corehead
