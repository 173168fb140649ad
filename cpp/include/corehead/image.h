// An RGB image as the engine takes it: 8 bits per channel, row-major, no padding.
#pragma once
#include <cstdint>
#include <vector>

namespace corehead {

struct Image {
    int64_t width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height * width * 3 bytes
};

}  // namespace corehead
