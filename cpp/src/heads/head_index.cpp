#include "heads/head_index.h"

#include <string>

#include "corehead/error.h"

namespace corehead {

void check_index(const char* what, int64_t i, int64_t n) {
    if (i < 0 || i >= n) {
        throw InputError(std::string(what) + " " + std::to_string(i) + " is out of range [0, " + std::to_string(n) + ")");
    }
}

}  // namespace corehead
