#include "image/image.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "corehead/error.h"

namespace corehead {

namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;  // Pillow's PRECISION_BITS for 8-bit images

double filter_value(Resample f, double x) {
    switch (f) {
        case Resample::Bilinear:
            if (x < 0.0) x = -x;
            return x < 1.0 ? 1.0 - x : 0.0;
        case Resample::Bicubic: {
            const double a = -0.5;
            if (x < 0.0) x = -x;
            if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
            if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
            return 0.0;
        }
        case Resample::Lanczos: {
            auto sinc = [](double v) {
                if (v == 0.0) return 1.0;
                v *= M_PI;
                return std::sin(v) / v;
            };
            return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
        }
    }
    return 0.0;
}

double filter_support(Resample f) {
    switch (f) {
        case Resample::Bilinear: return 1.0;
        case Resample::Bicubic: return 2.0;
        case Resample::Lanczos: return 3.0;
    }
    return 1.0;
}

// Fixed-point coefficients of a 1-D resampling from in_size to out_size (Pillow's precompute_coeffs
// followed by normalize_coeffs_8bpc).
struct Coeffs {
    int64_t ksize = 0;
    std::vector<int32_t> k;       // out_size * ksize
    std::vector<int64_t> bounds;  // out_size * 2: first input index, count
};

// Only the outputs [out_begin, out_begin + out_count) are computed (entry i is output out_begin + i):
// each output's coefficients depend on its own index alone, so a window is exact.
Coeffs precompute(int64_t in_size, int64_t out_size, Resample f, int64_t out_begin, int64_t out_count) {
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    const double filterscale = std::max(scale, 1.0);
    const double support = filter_support(f) * filterscale;
    Coeffs c;
    c.ksize = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
    c.k.assign(static_cast<size_t>(out_count * c.ksize), 0);
    c.bounds.resize(static_cast<size_t>(out_count * 2));
    std::vector<double> w(static_cast<size_t>(c.ksize));
    for (int64_t i = 0; i < out_count; ++i) {
        const int64_t xx = out_begin + i;
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int64_t xmin = static_cast<int64_t>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = static_cast<int64_t>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int64_t x = 0; x < xmax; ++x) {
            w[x] = filter_value(f, (x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        for (int64_t x = 0; x < xmax; ++x) {
            const double v = ww != 0.0 ? w[x] / ww : w[x];
            const double scaled = v * static_cast<double>(1 << kPrecisionBits);
            c.k[i * c.ksize + x] = static_cast<int32_t>(v < 0 ? -0.5 + scaled : 0.5 + scaled);
        }
        c.bounds[i * 2] = xmin;
        c.bounds[i * 2 + 1] = xmax;
    }
    return c;
}

inline uint8_t clip8(int32_t v) {
    if (v >= (1 << kPrecisionBits << 8)) return 255;
    if (v <= 0) return 0;
    return static_cast<uint8_t>(v >> kPrecisionBits);
}

// Columns [x0, x0 + out_w) of the horizontal resampling of `in` to width `full_w`.
ImageU8 resample_horizontal(const ImageU8& in, int64_t full_w, Resample f, int64_t x0, int64_t out_w) {
    const Coeffs c = precompute(in.width, full_w, f, x0, out_w);
    ImageU8 out;
    out.width = out_w;
    out.height = in.height;
    out.rgb.resize(static_cast<size_t>(out_w * in.height * 3));
    for (int64_t y = 0; y < in.height; ++y) {
        const uint8_t* row = in.rgb.data() + y * in.width * 3;
        uint8_t* dst = out.rgb.data() + y * out_w * 3;
        for (int64_t xx = 0; xx < out_w; ++xx) {
            const int64_t xmin = c.bounds[xx * 2], n = c.bounds[xx * 2 + 1];
            const int32_t* k = c.k.data() + xx * c.ksize;
            int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int64_t x = 0; x < n; ++x) {
                const uint8_t* p = row + (x + xmin) * 3;
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            dst[xx * 3 + 0] = clip8(s0);
            dst[xx * 3 + 1] = clip8(s1);
            dst[xx * 3 + 2] = clip8(s2);
        }
    }
    return out;
}

// Rows [y0, y0 + out_h) of the vertical resampling of `in` to height `full_h`.
ImageU8 resample_vertical(const ImageU8& in, int64_t full_h, Resample f, int64_t y0, int64_t out_h) {
    const Coeffs c = precompute(in.height, full_h, f, y0, out_h);
    ImageU8 out;
    out.width = in.width;
    out.height = out_h;
    out.rgb.resize(static_cast<size_t>(in.width * out_h * 3));
    const int64_t stride = in.width * 3;
    for (int64_t yy = 0; yy < out_h; ++yy) {
        const int64_t ymin = c.bounds[yy * 2], n = c.bounds[yy * 2 + 1];
        const int32_t* k = c.k.data() + yy * c.ksize;
        uint8_t* dst = out.rgb.data() + yy * stride;
        for (int64_t xc = 0; xc < stride; ++xc) {
            int32_t s = 1 << (kPrecisionBits - 1);
            for (int64_t y = 0; y < n; ++y) s += in.rgb[(y + ymin) * stride + xc] * k[y];
            dst[xc] = clip8(s);
        }
    }
    return out;
}

}  // namespace

void check_image(const ImageU8& img) {
    if (img.width <= 0 || img.height <= 0) {
        throw InputError("the image is empty (" + std::to_string(img.width) + "x" + std::to_string(img.height) + " pixels)");
    }
    if (img.width > kMaxImagePixels || img.height > kMaxImagePixels || img.width * img.height > kMaxImagePixels) {
        throw InputError("the image is too large (" + std::to_string(img.width) + "x" + std::to_string(img.height) +
                         " pixels; at most " + std::to_string(kMaxImagePixels / 1'000'000) + " megapixels): downscale it first");
    }
    if (static_cast<int64_t>(img.rgb.size()) != img.width * img.height * 3) {
        throw InputError("the image buffer holds " + std::to_string(img.rgb.size()) + " bytes, expected width*height*3 = " +
                         std::to_string(img.width * img.height * 3));
    }
}

ImageU8 resize(const ImageU8& img, int64_t width, int64_t height, Resample filter) {
    return resize_crop(img, width, height, filter, 0, 0, width, height);
}

ImageU8 resize_crop(const ImageU8& img, int64_t width, int64_t height, Resample filter, int64_t x0, int64_t y0, int64_t w,
                    int64_t h) {
    check_image(img);
    if (width <= 0 || height <= 0 || width > kMaxResizeSide || height > kMaxResizeSide) {
        throw InputError("invalid resize target " + std::to_string(width) + "x" + std::to_string(height));
    }
    if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 + w > width || y0 + h > height) {
        throw InputError("crop rectangle outside the resized image");
    }
    if (w * h > 4 * kMaxImagePixels) {
        throw InputError("the resized image would be too large (" + std::to_string(w) + "x" + std::to_string(h) + " pixels)");
    }
    // As Pillow 13 (what the fixtures were made with): two passes, each only when its size changes; the vertical one first when
    // the height shrinks more than twice as much as the width (the order changes the rounding of
    // the 8-bit intermediate image). A pass keeps only the outputs the window needs; outputs of the
    // first pass outside the window are never read by the second (each output reads its own row or
    // column of the intermediate), so the window is bit-identical to cropping the full resize.
    const bool same_w = width == img.width, same_h = height == img.height;
    if (same_w && same_h) return crop(img, x0, y0, w, h);
    if (same_w) return resample_vertical(crop(img, x0, 0, w, img.height), height, filter, y0, h);
    if (same_h) return resample_horizontal(crop(img, 0, y0, img.width, h), width, filter, x0, w);
    const int64_t dh = img.height - height, dw = img.width - width;
    if (dh > 0 && dh > dw * 2) {
        return resample_horizontal(resample_vertical(img, height, filter, y0, h), width, filter, x0, w);
    }
    return resample_vertical(resample_horizontal(img, width, filter, x0, w), height, filter, y0, h);
}

ImageU8 crop(const ImageU8& img, int64_t x, int64_t y, int64_t width, int64_t height) {
    check_image(img);
    if (x < 0 || y < 0 || width <= 0 || height <= 0 || x + width > img.width || y + height > img.height) {
        throw InputError("crop rectangle outside the image");
    }
    ImageU8 out;
    out.width = width;
    out.height = height;
    out.rgb.resize(static_cast<size_t>(width * height * 3));
    for (int64_t r = 0; r < height; ++r) {
        std::copy_n(img.rgb.data() + ((y + r) * img.width + x) * 3, width * 3, out.rgb.data() + r * width * 3);
    }
    return out;
}

std::vector<float> normalize_chw(const ImageU8& img, const std::array<float, 3>& mean, const std::array<float, 3>& std) {
    check_image(img);
    const int64_t n = img.width * img.height;
    std::vector<float> out(static_cast<size_t>(3 * n));
    for (int c = 0; c < 3; ++c) {
        // Same order of operations as transformers: rescale by 1/255 (in double), then (x - mean) / std in float.
        for (int64_t i = 0; i < n; ++i) {
            const float v = static_cast<float>(img.rgb[i * 3 + c] * (1.0 / 255.0));
            out[c * n + i] = (v - mean[c]) / std[c];
        }
    }
    return out;
}

}  // namespace corehead
