// libFuzzer target: the C++ image path (what an RGB array from Python reaches).
//
// Input layout (little endian; missing bytes read as 0):
//   [0]      mode: even -> a vision family's prepare() (resize/crop/tile/normalize + token
//            layout) with the hyper-parameters of one fixture mmproj; odd -> resize / crop /
//            normalize_chw directly with fuzzed targets
//   [1]      family index (mode 0) or resample filter (mode 1)
//   [2..3]   image width, [4..5] image height (0 allowed: must be refused cleanly)
//   [6]      flags: bit 0 -> rgb buffer one byte short (must be refused cleanly)
//   [7..14]  mode 1: resize target width, height (uint16 each), crop x, y (uint16 each)
//   [15..]   pixel bytes, repeated to fill width * height * 3
// Images above kMaxPixels are skipped to keep executions fast (check_image's own 50 MP limit is
// tested by the unit tests). corehead::InputError is the only acceptable failure, and an
// invalid buffer must be refused.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "corehead/error.h"
#include "fuzz_common.h"
#include "image/image.h"
#include "runtime/multimodal.h"
#include "vision/family.h"
#include "vision/vision_model.h"

using namespace corehead;

namespace {

constexpr int64_t kMaxPixels = 1 << 18;
std::vector<VisionModelFile> g_mmproj;

struct Reader {
    const uint8_t* d;
    size_t n;
    uint32_t u8(size_t at) const { return at < n ? d[at] : 0; }
    uint32_t u16(size_t at) const { return u8(at) | (u8(at + 1) << 8); }
};

bool finite_all(const std::vector<float>& v) {
    for (float x : v) {
        if (!std::isfinite(x)) return false;
    }
    return true;
}

void check_prepared(const PreparedImage& p, const ImageU8& img) {
    FUZZ_CHECK(p.width == img.width && p.height == img.height);
    FUZZ_CHECK(!p.views.empty());
    int64_t in_layout = 0;
    for (const LayoutPiece& piece : p.layout) {
        if (piece.view < 0) continue;
        FUZZ_CHECK(piece.view < static_cast<int>(p.views.size()));
        const VisionView& v = p.views[piece.view];
        in_layout += v.grid_w * v.grid_h;
    }
    FUZZ_CHECK(in_layout == p.n_tokens());
    for (const VisionView& v : p.views) {
        FUZZ_CHECK(v.width > 0 && v.height > 0 && v.grid_w > 0 && v.grid_h > 0);
        FUZZ_CHECK(static_cast<int64_t>(v.pixels.size()) == 3 * v.width * v.height);
        FUZZ_CHECK(finite_all(v.pixels));
        const double eps = 1e-6 * (img.width + img.height);
        FUZZ_CHECK(v.box[0] >= -eps && v.box[1] >= -eps && v.box[0] < v.box[2] && v.box[1] < v.box[3]);
        FUZZ_CHECK(v.box[2] <= img.width + eps && v.box[3] <= img.height + eps);
    }
    const std::vector<float> boxes = MultimodalRunner::token_boxes(p);
    FUZZ_CHECK(static_cast<int64_t>(boxes.size()) == 4 * p.n_tokens());
    FUZZ_CHECK(finite_all(boxes));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    namespace fs = std::filesystem;
    const char* env = std::getenv("COREHEAD_FUZZ_DATA");
    const fs::path root = env ? env : COREHEAD_FIXTURES;
    std::vector<fs::path> files;
    for (const auto& dir : fs::directory_iterator(root)) {
        if (fs::exists(dir.path() / "mmproj-f16.gguf")) files.push_back(dir.path() / "mmproj-f16.gguf");
    }
    std::sort(files.begin(), files.end());  // stable family indices across runs
    for (const auto& f : files) g_mmproj.push_back(open_mmproj(f.string()));
    if (g_mmproj.empty()) {
        std::fprintf(stderr, "no fixture mmproj files under %s (set COREHEAD_FUZZ_DATA)\n", root.c_str());
        std::abort();
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const Reader r{data, size};
    ImageU8 img;
    img.width = r.u16(2);
    img.height = r.u16(4);
    if (img.width * img.height > kMaxPixels) return 0;
    const size_t n = static_cast<size_t>(img.width * img.height * 3);
    img.rgb.resize(n);
    const size_t header = 15;
    if (size > header) {
        for (size_t i = 0; i < n; ++i) img.rgb[i] = data[header + i % (size - header)];
    }
    if ((r.u8(6) & 1) && !img.rgb.empty()) img.rgb.pop_back();
    const bool valid = img.width > 0 && img.height > 0 && !(r.u8(6) & 1);

    if (r.u8(0) % 2 == 0) {
        const VisionModelFile& m = g_mmproj[r.u8(1) % g_mmproj.size()];
        try {
            const PreparedImage p = m.family->prepare(img, m.hp);
            FUZZ_CHECK(valid);
            check_prepared(p, img);
        } catch (const InputError& e) {
            // Refusing is fine (bad buffers; images a family cannot take, e.g. Qwen2-VL's aspect
            // ratio limit of 200), as long as it says why.
            FUZZ_CHECK(std::string(e.what()).size() > 10);
        }
        return 0;
    }

    const Resample filter = static_cast<Resample>(r.u8(1) % 3);
    const int64_t tw = r.u16(7) % 2048, th = r.u16(9) % 2048;
    try {
        if (tw * th <= 4 * kMaxPixels) {
            const ImageU8 out = resize(img, tw, th, filter);
            FUZZ_CHECK(valid && tw > 0 && th > 0);
            FUZZ_CHECK(out.width == tw && out.height == th && static_cast<int64_t>(out.rgb.size()) == tw * th * 3);
        }
    } catch (const InputError&) {
        FUZZ_CHECK(!valid || tw <= 0 || th <= 0);
    }
    const int64_t cx = r.u16(11) % 1024, cy = r.u16(13) % 1024;
    try {
        const ImageU8 c = crop(img, cx, cy, tw, th);
        FUZZ_CHECK(cx + tw <= img.width && cy + th <= img.height);
        FUZZ_CHECK(static_cast<int64_t>(c.rgb.size()) == tw * th * 3);
    } catch (const InputError&) {
    }
    // resize_crop computes only a window of the resize: it must equal cropping the full resize.
    if (valid && tw > 0 && th > 0 && tw * th <= 4 * kMaxPixels) {
        const int64_t x0 = cx % tw, y0 = cy % th;
        const int64_t w = 1 + r.u8(7) % (tw - x0), h = 1 + r.u8(9) % (th - y0);
        const ImageU8 window = resize_crop(img, tw, th, filter, x0, y0, w, h);
        const ImageU8 full = crop(resize(img, tw, th, filter), x0, y0, w, h);
        FUZZ_CHECK(window.width == w && window.height == h && window.rgb == full.rgb);
    }
    if (valid) {
        const std::vector<float> px = normalize_chw(img, {0.5f, 0.4f, 0.3f}, {0.2f, 0.25f, 0.3f});
        FUZZ_CHECK(static_cast<int64_t>(px.size()) == 3 * img.width * img.height && finite_all(px));
    }
    return 0;
}
