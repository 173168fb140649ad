// An RGB image (or a video clip) as the engine takes it: 8 bits per channel, row-major, no padding.
#pragma once
#include <cstdint>
#include <vector>

namespace corehead {

struct Image {
    int64_t width = 0, height = 0;
    std::vector<uint8_t> rgb;  // height * width * 3 bytes (a video: n_frames times that, frame after frame)
    // A video clip: n_frames >= 1 frames of width x height in `rgb`, taken at `timestamps`
    // (seconds, one per frame, non-decreasing) by a sampler running at `fps` frames per second
    // (Qwen2.5-VL spaces temporal positions by 2 / fps, Qwen3-VL writes the timestamps into the
    // prompt). n_frames == 0: a still image.
    int64_t n_frames = 0;
    std::vector<double> timestamps;
    double fps = 0.0;
    bool is_video() const { return n_frames > 0; }
};

}  // namespace corehead
