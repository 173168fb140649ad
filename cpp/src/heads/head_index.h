// Range checks for the (layer, head) indices users pass: each message exists once.
#pragma once
#include <cstdint>
#include <vector>

namespace corehead {

// Throws InputError("<what> <i> is out of range [0, n)").
void check_index(const char* what, int64_t i, int64_t n);
inline void check_layer(int64_t layer, int64_t n_layer) { check_index("layer", layer, n_layer); }
// check_layer, then refuses a layer without attention heads (recurrent[layer]: a hybrid model's
// Gated DeltaNet layer), naming the layers that have heads.
void check_head_layer(int64_t layer, int64_t n_layer, const std::vector<bool>& recurrent);

}  // namespace corehead
