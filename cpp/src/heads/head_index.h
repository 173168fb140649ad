// Range checks for the (layer, head) indices users pass: each message exists once.
#pragma once
#include <cstdint>

namespace corehead {

// Throws InputError("<what> <i> is out of range [0, n)").
void check_index(const char* what, int64_t i, int64_t n);
inline void check_layer(int64_t layer, int64_t n_layer) { check_index("layer", layer, n_layer); }

}  // namespace corehead
