// Idefics3 / SmolVLM: SigLIP ViT (no CLS) + pixel shuffle (scale_factor^2 patches per
// token) + one linear projector. Preprocessing as transformers' Idefics3ImageProcessor:
// longest edge to preproc_image_size (LANCZOS, even short edge), then up to multiples of the
// tile size, split into tiles row-major, plus the whole image squashed to one tile as the
// global view (last).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf/gguf_file.h"
#include "vision/family.h"
#include "vision/graph.h"

namespace corehead {

namespace {

constexpr int64_t kMaxImageSize = 4096;  // transformers' MAX_IMAGE_SIZE for Idefics3

// num2words(n) in English, as SmolVLM's processor spells the frame count: "twenty-one",
// "one hundred and five", "one thousand, two hundred and thirty-four", "two million and one".
std::string english_number(int64_t n) {
    static const char* small[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                                  "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                                  "eighteen", "nineteen"};
    static const char* tens[] = {"", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"};
    auto below_100 = [&](int64_t r) {
        return r < 20 ? std::string(small[r]) : std::string(tens[r / 10]) + (r % 10 ? std::string("-") + small[r % 10] : "");
    };
    auto below_1000 = [&](int64_t r) {
        std::string out = r >= 100 ? std::string(small[r / 100]) + " hundred" : "";
        if (r % 100) out += (r >= 100 ? " and " : "") + below_100(r % 100);
        return out;
    };
    if (n < 1000) return n == 0 ? "zero" : below_1000(n);
    static const char* scales[] = {"", " thousand", " million", " billion", " trillion"};
    std::vector<int64_t> groups;  // least significant first
    for (int64_t m = n; m > 0; m /= 1000) groups.push_back(m % 1000);
    std::string out;
    for (size_t i = groups.size(); i-- > 0;) {
        if (groups[i] == 0) continue;
        if (!out.empty()) out += (i == 0 && groups[0] < 100) ? " and " : ", ";
        out += below_1000(groups[i]) + scales[i];
    }
    return out;
}

// str(datetime.timedelta(seconds=s)): "0:00:02", "1:02:05", "1 day, 1:00:00".
std::string timedelta_text(int64_t s) {
    char hms[32];
    std::snprintf(hms, sizeof hms, "%lld:%02lld:%02lld", static_cast<long long>(s % 86400 / 3600),
                  static_cast<long long>(s % 3600 / 60), static_cast<long long>(s % 60));
    const int64_t days = s / 86400;
    return days ? std::to_string(days) + (days == 1 ? " day, " : " days, ") + hms : std::string(hms);
}

class Idefics3Family final : public VisionFamily {
public:
    const char* projector() const override { return "idefics3"; }
    const char* image_token() const override { return "<image>"; }
    std::vector<std::string> layout_tokens() const override { return {"<fake_token_around_image>", "<global-img>"}; }
    void read_hparams(const GgufFile& f, VisionHParams& hp) const override {
        hp.scale_factor = f.find_int("clip.vision.projector.scale_factor").value_or(2);
        if (hp.scale_factor <= 0 || hp.patches_per_side() % hp.scale_factor != 0) {
            f.fail("clip.vision.projector.scale_factor must divide the patches per side (" +
                   std::to_string(hp.patches_per_side()) + ")");
        }
        const ggml_tensor* fc = f.find_tensor("mm.model.fc.weight");
        if (!fc) f.fail("missing tensor 'mm.model.fc.weight' (Idefics3 projector)");
        hp.n_out = fc->ne[1];
        if (hp.preproc_image_size == 0) hp.preproc_image_size = 4 * hp.image_size;
        if (hp.preproc_image_size <= hp.image_size || hp.preproc_image_size > kMaxImageSize) {
            f.fail("clip.vision.preproc_image_size must be larger than the tile size and at most 4096");
        }
    }
    std::vector<TensorSpec> tensor_specs(const GgufFile&, const VisionHParams& hp) const override {
        std::vector<TensorSpec> s = {{"mm.model.fc.weight", {hp.n_embd * hp.scale_factor * hp.scale_factor, hp.n_out}}};
        add_siglip_specs(s, hp);
        return s;
    }

    PreparedImage prepare(const ImageU8& img, const VisionHParams& hp) const override {
        check_image(img);
        const int64_t T = hp.image_size, L = hp.preproc_image_size;
        // 1. longest edge to L, the other keeping the aspect ratio, rounded up to even.
        int64_t w = img.width, h = img.height;
        const double aspect = static_cast<double>(w) / static_cast<double>(h);
        if (w >= h) {
            w = L;
            h = static_cast<int64_t>(static_cast<double>(w) / aspect);
            if (h % 2 != 0) ++h;
        } else {
            h = L;
            w = static_cast<int64_t>(static_cast<double>(h) * aspect);
            if (w % 2 != 0) ++w;
        }
        h = std::max<int64_t>(h, 1);
        w = std::max<int64_t>(w, 1);
        // (the 4096 upper bound never binds: L <= 4096)
        ImageU8 r1 = resize(img, w, h, Resample::Lanczos);
        // 2. up to multiples of the tile size.
        const double aspect2 = static_cast<double>(w) / static_cast<double>(h);
        auto ceil_to = [&](int64_t v) { return ((v + T - 1) / T) * T; };
        if (w >= h) {
            w = ceil_to(w);
            h = ceil_to(static_cast<int64_t>(static_cast<double>(w) / aspect2));
        } else {
            h = ceil_to(h);
            w = ceil_to(static_cast<int64_t>(static_cast<double>(h) * aspect2));
        }
        const ImageU8 r2 = resize(r1, w, h, Resample::Lanczos);
        const int64_t g = hp.patches_per_side() / hp.scale_factor;
        const double sx = static_cast<double>(img.width) / w, sy = static_cast<double>(img.height) / h;
        PreparedImage p;
        p.width = img.width;
        p.height = img.height;
        const std::array<double, 4> whole{0.0, 0.0, static_cast<double>(img.width), static_cast<double>(img.height)};
        if (w > T || h > T) {
            const int64_t rows = h / T, cols = w / T;
            for (int64_t r = 0; r < rows; ++r) {
                for (int64_t c = 0; c < cols; ++c) {
                    p.views.push_back(make_view(crop(r2, c * T, r * T, T, T), hp,
                                                {c * T * sx, r * T * sy, (c + 1) * T * sx, (r + 1) * T * sy}, g, g));
                    p.layout.push_back({"<fake_token_around_image><row_" + std::to_string(r + 1) + "_col_" +
                                            std::to_string(c + 1) + ">",
                                        -1});
                    p.layout.push_back({"", static_cast<int>(p.views.size() - 1)});
                }
                p.layout.push_back({"\n", -1});
            }
            p.views.push_back(make_view(resize(r2, T, T, Resample::Lanczos), hp, whole, g, g));
            p.layout.push_back({"\n<fake_token_around_image><global-img>", -1});
        } else {
            p.views.push_back(make_view(r2, hp, whole, g, g));
            p.layout.push_back({"<fake_token_around_image><global-img>", -1});
        }
        p.layout.push_back({"", static_cast<int>(p.views.size() - 1)});
        p.layout.push_back({"<fake_token_around_image>", -1});
        return p;
    }

    // SmolVLM's video path (SmolVLMVideoProcessor + SmolVLMProcessor.replace_video_token): every
    // frame squashed to one tile (the global view's layout, no tiling) after an intro naming the
    // frame count in words and the duration, each frame after "\nFrame from MM:SS:", "\n\n" at
    // the end. The duration is int(n_frames / fps) (the source's length for a sampled file).
    PreparedImage prepare_video(const std::vector<ImageU8>& frames, const std::vector<double>& timestamps, double fps,
                                const VisionHParams& hp) const override {
        PreparedImage p;
        add_frame_views(p, frames, hp.image_size, Resample::Lanczos, hp, hp.patches_per_side() / hp.scale_factor);
        const double seconds = static_cast<double>(frames.size()) / fps;
        std::string text = "You are provided the following series of " + english_number(p.n_frames) + " frames from a " +
                           timedelta_text(static_cast<int64_t>(seconds)) + " [H:MM:SS] video.\n";
        for (size_t i = 0; i < frames.size(); ++i) {
            const int64_t t = static_cast<int64_t>(timestamps[i]);
            char stamp[48];
            std::snprintf(stamp, sizeof stamp, "\nFrame from %02lld:%02lld:", static_cast<long long>(t / 60),
                          static_cast<long long>(t % 60));
            p.layout.push_back({text + stamp + "<fake_token_around_image><global-img>", -1});
            p.layout.push_back({"", static_cast<int>(i)});
            text = "<fake_token_around_image>";
        }
        p.layout.push_back({text + "\n\n", -1});
        return p;
    }

    ggml_tensor* build(VisionGraph& g) const override {
        const VisionHParams& hp = g.hp;
        ggml_tensor* x = g.siglip_tower();
        x = g.pixel_shuffle(x, g.grid_w, g.grid_h, hp.scale_factor);
        return g.linear(x, g.w("mm.model.fc.weight"));
    }
};

}  // namespace

const VisionFamily& idefics3_family() {
    static const Idefics3Family f;
    return f;
}

}  // namespace corehead
