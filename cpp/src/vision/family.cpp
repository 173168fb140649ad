#include "vision/family.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "corehead/error.h"

namespace corehead {

PromptPositions VisionFamily::positions(int64_t n_tokens, const std::vector<VisualSpan>&,
                                       const std::vector<PreparedImage>&) const {
    return {{}, n_tokens};
}

PreparedImage VisionFamily::prepare_video(const std::vector<ImageU8>&, const std::vector<double>&, double,
                                          const VisionHParams& hp) const {
    throw InputError("projector '" + hp.projector + "' takes no videos (its transformers processor has no video "
                     "path): pass the frames you want as images instead");
}

PromptPositions mrope_prompt_positions(int64_t n, const std::vector<VisualSpan>& spans,
                                       const std::vector<PreparedImage>& images) {
    PromptPositions out;
    std::vector<int32_t>& pos = out.positions;
    pos.assign(static_cast<size_t>(4 * n), 0);
    int64_t cur = 0, i = 0, block = 0;
    for (const VisualSpan& s : spans) {
        for (; i < s.start; ++i, ++cur) {
            for (int sec = 0; sec < 3; ++sec) pos[sec * n + i] = static_cast<int32_t>(cur);
        }
        const VisionView& v = images[s.image].views[s.view];
        // A video's temporal patches share one block (transformers' get_vision_position_ids):
        // t = start + t_pos, rows and columns from the same start.
        if (!v.same_block || s.view == 0) block = cur;
        for (int64_t k = 0; k < s.n; ++k, ++i) {
            pos[i] = static_cast<int32_t>(block + v.t_pos);
            pos[n + i] = static_cast<int32_t>(block + (s.first + k) / v.grid_w);
            pos[2 * n + i] = static_cast<int32_t>(block + (s.first + k) % v.grid_w);
        }
        // The text after a block continues at start + max(rows, columns), however long the video
        // (transformers 5's get_rope_index; the temporal extent does not advance it).
        cur = block + std::max(v.grid_w, v.grid_h);
    }
    for (; i < n; ++i, ++cur) {
        for (int sec = 0; sec < 3; ++sec) pos[sec * n + i] = static_cast<int32_t>(cur);
    }
    out.next = cur;
    return out;
}

PreparedImage qwen_prepare(const ImageU8& img, const VisionHParams& hp) {
    check_image(img);
    const int64_t factor = hp.patch_size * hp.spatial_merge;
    int64_t h = 0, w = 0;
    smart_resize(img.height, img.width, factor, hp.min_pixels, hp.max_pixels, h, w);
    PreparedImage p;
    p.width = img.width;
    p.height = img.height;
    p.views.push_back(make_view(resize(img, w, h, Resample::Bicubic), hp,
                                {0.0, 0.0, static_cast<double>(img.width), static_cast<double>(img.height)},
                                w / factor, h / factor));
    p.layout = {{"<|vision_start|>", -1}, {"", 0}, {"<|vision_end|>", -1}};
    return p;
}

PreparedImage qwen_prepare_video(const std::vector<ImageU8>& frames_in, const std::vector<double>& timestamps_in,
                                 const VisionHParams& hp, float time_interval, bool qwen3) {
    if (frames_in.empty()) throw InputError("the video has no frames");
    if (timestamps_in.size() != frames_in.size()) throw InputError("the video needs one timestamp per frame");
    for (const ImageU8& f : frames_in) {
        check_image(f);
        if (f.width != frames_in[0].width || f.height != frames_in[0].height) {
            throw InputError("the frames of a video must all have one size (frame 0 is " + std::to_string(frames_in[0].width) +
                             "x" + std::to_string(frames_in[0].height) + ", another " + std::to_string(f.width) + "x" +
                             std::to_string(f.height) + ")");
        }
    }
    const int64_t factor = hp.patch_size * hp.spatial_merge, T = static_cast<int64_t>(frames_in.size());
    const int64_t H = frames_in[0].height, W = frames_in[0].width;
    int64_t h = 0, w = 0;
    if (!qwen3) {
        smart_resize(H, W, factor, hp.video_min_pixels, hp.video_max_pixels, h, w);  // per frame
    } else {
        // Qwen3-VL's video smart_resize bounds all frames together (t rounded to pairs).
        if (T < 2) {
            throw InputError("Qwen3-VL's video processor needs at least 2 frames (one temporal patch), got 1: pass a "
                             "single frame as an image");
        }
        double hh = static_cast<double>(H), ww = static_cast<double>(W);
        const double f = static_cast<double>(factor);
        if (hh < f || ww < f) {
            const double scale = std::max(f / hh, f / ww);
            hh = std::floor(hh * scale);
            ww = std::floor(ww * scale);
        }
        if (std::max(hh, ww) / std::min(hh, ww) > 200) {
            throw InputError("the video's aspect ratio is " + std::to_string(std::max(hh, ww) / std::min(hh, ww)) +
                             ": Qwen-VL takes at most 200:1");
        }
        const double t = static_cast<double>(T), t_bar = std::nearbyint(t / 2) * 2;
        double h_bar = std::nearbyint(hh / f) * f, w_bar = std::nearbyint(ww / f) * f;
        if (t_bar * h_bar * w_bar > static_cast<double>(hp.video_max_pixels)) {
            const double beta = std::sqrt(t * hh * ww / static_cast<double>(hp.video_max_pixels));
            h_bar = std::max(f, std::floor(hh / beta / f) * f);
            w_bar = std::max(f, std::floor(ww / beta / f) * f);
        } else if (t_bar * h_bar * w_bar < static_cast<double>(hp.video_min_pixels)) {
            const double beta = std::sqrt(static_cast<double>(hp.video_min_pixels) / (t * hh * ww));
            h_bar = std::ceil(hh * beta / f) * f;
            w_bar = std::ceil(ww * beta / f) * f;
        }
        h = static_cast<int64_t>(h_bar);
        w = static_cast<int64_t>(w_bar);
    }
    // An odd frame count is padded with the last frame (and its timestamp), as patchify does.
    std::vector<const ImageU8*> frames;
    std::vector<double> ts = timestamps_in;
    for (const ImageU8& f : frames_in) frames.push_back(&f);
    if (frames.size() % 2) {
        frames.push_back(frames.back());
        ts.push_back(ts.back());
    }
    PreparedImage p;
    p.width = W;
    p.height = H;
    p.n_frames = T;
    p.placeholder = "<|video_pad|>";
    const std::array<double, 4> box{0.0, 0.0, static_cast<double>(W), static_cast<double>(H)};
    auto frame = [&](size_t i) { return w == W && h == H ? *frames[i] : resize(*frames[i], w, h, Resample::Bicubic); };
    if (!qwen3) p.layout.push_back({"<|vision_start|>", -1});
    for (size_t g = 0; 2 * g < frames.size(); ++g) {
        VisionView v = make_view(frame(2 * g), hp, box, w / factor, h / factor);
        v.pixels_next = normalize_chw(frame(2 * g + 1), hp.image_mean, hp.image_std);
        v.frame0 = static_cast<int64_t>(2 * g);
        v.frame1 = std::min<int64_t>(static_cast<int64_t>(2 * g + 1), T - 1);
        const int view = static_cast<int>(p.views.size());
        if (qwen3) {
            // processing_qwen3_vl: f"<{t:.1f} seconds>" with t the mean timestamp of the patch.
            char stamp[64];
            std::snprintf(stamp, sizeof stamp, "<%.1f seconds>", (ts[2 * g] + ts[2 * g + 1]) / 2);
            p.layout.push_back({std::string(stamp) + "<|vision_start|>", -1});
            p.layout.push_back({"", view});
            p.layout.push_back({"<|vision_end|>", -1});
        } else {
            // torch: (arange(grid_t) * time_interval).long(), in float32.
            v.t_pos = static_cast<int64_t>(static_cast<float>(g) * time_interval);
            v.same_block = g > 0;
            p.layout.push_back({"", view});
        }
        p.views.push_back(std::move(v));
    }
    if (!qwen3) p.layout.push_back({"<|vision_end|>", -1});
    return p;
}

std::vector<int32_t> rope_2d_positions(int64_t gw, int64_t gh) {
    const int64_t N = gw * gh;
    std::vector<int32_t> pos(static_cast<size_t>(4 * N));
    for (int64_t r = 0; r < gh; ++r) {
        for (int64_t c = 0; c < gw; ++c) {
            const int64_t i = r * gw + c;
            pos[i] = pos[2 * N + i] = static_cast<int32_t>(r);
            pos[N + i] = pos[3 * N + i] = static_cast<int32_t>(c);
        }
    }
    return pos;
}

void smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels, int64_t& h_out,
                  int64_t& w_out) {
    const double h = static_cast<double>(height), w = static_cast<double>(width), f = static_cast<double>(factor);
    if (std::max(h, w) / std::min(h, w) > 200) {
        throw InputError("the image's aspect ratio is " + std::to_string(std::max(h, w) / std::min(h, w)) +
                         ": Qwen-VL takes at most 200:1");
    }
    // Python's round() rounds halves to even, as nearbyint does in the default rounding mode.
    double h_bar = std::nearbyint(h / f) * f, w_bar = std::nearbyint(w / f) * f;
    if (h_bar * w_bar > static_cast<double>(max_pixels)) {
        const double beta = std::sqrt(h * w / static_cast<double>(max_pixels));
        h_bar = std::max(f, std::floor(h / beta / f) * f);
        w_bar = std::max(f, std::floor(w / beta / f) * f);
    } else if (h_bar * w_bar < static_cast<double>(min_pixels)) {
        const double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
        h_bar = std::ceil(h * beta / f) * f;
        w_bar = std::ceil(w * beta / f) * f;
    }
    h_out = static_cast<int64_t>(h_bar);
    w_out = static_cast<int64_t>(w_bar);
}

void add_patch_embedding_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, int64_t n_positions) {
    const int64_t E = hp.n_embd, P = hp.patch_size;
    s.push_back({"v.patch_embd.weight", {P, P, 3, E}});
    s.push_back({"v.patch_embd.bias", {E}, false});
    if (n_positions > 0) s.push_back({"v.position_embd.weight", {E, n_positions}});
}

void add_post_ln_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool weight_required, bool bias_required) {
    s.push_back({"v.post_ln.weight", {hp.n_embd}, weight_required});
    s.push_back({"v.post_ln.bias", {hp.n_embd}, bias_required});
}

void add_siglip_specs(std::vector<TensorSpec>& s, const VisionHParams& hp) {
    add_patch_embedding_specs(s, hp, hp.patches_per_side() * hp.patches_per_side());
    add_post_ln_specs(s, hp, true, true);
    add_vit_block_specs(s, hp, /*rms_norm=*/false, /*gated_ffn=*/false);
}

void add_mlp_projector_specs(std::vector<TensorSpec>& s, int64_t in, int64_t hidden, int64_t out) {
    s.push_back({"mm.0.weight", {in, hidden}});
    s.push_back({"mm.0.bias", {hidden}});
    s.push_back({"mm.2.weight", {hidden, out}});
    s.push_back({"mm.2.bias", {out}});
}

void add_vit_block_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool rms_norm, bool gated_ffn,
                         bool fused_qkv) {
    const int64_t E = hp.n_embd;
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        if (fused_qkv) {
            s.push_back({b + "attn_qkv.weight", {E, 3 * E}});
            s.push_back({b + "attn_qkv.bias", {3 * E}, false});
        }
        for (const char* p : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
            if (fused_qkv && p[5] != 'o') continue;
            s.push_back({b + p + ".weight", {E, E}});
            s.push_back({b + p + ".bias", {E}, false});
        }
        for (const char* n : {"ln1", "ln2"}) {
            s.push_back({b + n + ".weight", {E}});
            s.push_back({b + n + ".bias", {E}, !rms_norm});
        }
        const std::string up = hp.ffn_swapped ? "ffn_down" : "ffn_up";
        const std::string down = hp.ffn_swapped ? "ffn_up" : "ffn_down";
        s.push_back({b + up + ".weight", {E, hp.n_ff}});
        s.push_back({b + up + ".bias", {hp.n_ff}, false});
        s.push_back({b + down + ".weight", {hp.n_ff, E}});
        s.push_back({b + down + ".bias", {E}, false});
        if (gated_ffn) {
            s.push_back({b + "ffn_gate.weight", {E, hp.n_ff}});
            s.push_back({b + "ffn_gate.bias", {hp.n_ff}, false});
        }
    }
}

VisionView make_view(const ImageU8& img, const VisionHParams& hp, std::array<double, 4> box, int64_t grid_w,
                     int64_t grid_h) {
    VisionView v;
    v.width = img.width;
    v.height = img.height;
    v.pixels = normalize_chw(img, hp.image_mean, hp.image_std);
    v.grid_w = grid_w;
    v.grid_h = grid_h;
    v.box = box;
    return v;
}

void add_frame_views(PreparedImage& p, const std::vector<ImageU8>& frames, int64_t tile, Resample filter,
                     const VisionHParams& hp, int64_t grid) {
    if (frames.empty()) throw InputError("the video has no frames");
    p.width = frames[0].width;
    p.height = frames[0].height;
    p.n_frames = static_cast<int64_t>(frames.size());
    const std::array<double, 4> box{0.0, 0.0, static_cast<double>(p.width), static_cast<double>(p.height)};
    for (const ImageU8& f : frames) {
        check_image(f);
        if (f.width != p.width || f.height != p.height) throw InputError("the frames of a video must all have one size");
        p.views.push_back(make_view(f.width == tile && f.height == tile ? f : resize(f, tile, tile, filter), hp, box,
                                    grid, grid));
        p.views.back().frame0 = p.views.back().frame1 = static_cast<int64_t>(p.views.size() - 1);
    }
}

}  // namespace corehead
