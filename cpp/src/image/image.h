// RGB8 images and the pixel operations the preprocessors need. Resampling reproduces
// Pillow's Image.resize (separable filters, 8-bit fixed-point accumulation, a rounded
// intermediate after the horizontal pass) so that pixel values match the transformers
// image processors, which resize through Pillow, exactly.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "corehead/image.h"

namespace corehead {

using ImageU8 = Image;

enum class Resample { Bilinear, Bicubic, Lanczos };

// Largest accepted input (width * height); bigger images are refused before any allocation.
constexpr int64_t kMaxImagePixels = 50'000'000;

// Throws InputError when the dimensions are not positive, too large, or the buffer size is wrong.
void check_image(const ImageU8& img);

// Largest side of a resize target (the full image a window is taken from).
constexpr int64_t kMaxResizeSide = int64_t(1) << 40;

ImageU8 resize(const ImageU8& img, int64_t width, int64_t height, Resample filter);
// The window [x0, x0 + w) x [y0, y0 + h) of resize(img, width, height, filter), bit-identical to
// crop(resize(...)) but computing (and allocating) only the window: an extreme aspect ratio resized
// to a short side of S (LLaVA) cannot blow up a small input into a huge intermediate image.
ImageU8 resize_crop(const ImageU8& img, int64_t width, int64_t height, Resample filter, int64_t x0, int64_t y0, int64_t w,
                    int64_t h);
ImageU8 crop(const ImageU8& img, int64_t x, int64_t y, int64_t width, int64_t height);

// Channel-first float pixels: (v / 255 - mean[c]) / std[c], [3][height][width].
std::vector<float> normalize_chw(const ImageU8& img, const std::array<float, 3>& mean, const std::array<float, 3>& std);

}  // namespace corehead
