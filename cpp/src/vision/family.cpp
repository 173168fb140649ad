#include "vision/family.h"

#include <algorithm>

namespace corehead {

PromptPositions VisionFamily::positions(int64_t n_tokens, const std::vector<VisualSpan>&,
                                       const std::vector<PreparedImage>&) const {
    return {{}, n_tokens};
}

std::vector<std::string> VisionFamily::text_archs() const {
    if (const char* a = text_arch()) return {a};
    return {};
}

PromptPositions mrope_prompt_positions(int64_t n, const std::vector<VisualSpan>& spans,
                                       const std::vector<PreparedImage>& images) {
    PromptPositions out;
    std::vector<int32_t>& pos = out.positions;
    pos.assign(static_cast<size_t>(4 * n), 0);
    int64_t cur = 0, i = 0;
    for (const VisualSpan& s : spans) {
        for (; i < s.start; ++i, ++cur) {
            for (int sec = 0; sec < 3; ++sec) pos[sec * n + i] = static_cast<int32_t>(cur);
        }
        const VisionView& v = images[s.image].views[s.view];
        for (int64_t k = 0; k < s.n; ++k, ++i) {
            pos[i] = static_cast<int32_t>(cur);
            pos[n + i] = static_cast<int32_t>(cur + k / v.grid_w);
            pos[2 * n + i] = static_cast<int32_t>(cur + k % v.grid_w);
        }
        cur += std::max(v.grid_w, v.grid_h);
    }
    for (; i < n; ++i, ++cur) {
        for (int sec = 0; sec < 3; ++sec) pos[sec * n + i] = static_cast<int32_t>(cur);
    }
    out.next = cur;
    return out;
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

void add_vit_block_specs(std::vector<TensorSpec>& s, const VisionHParams& hp, bool rms_norm, bool gated_ffn) {
    const int64_t E = hp.n_embd;
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        const std::string b = "v.blk." + std::to_string(i) + ".";
        for (const char* p : {"attn_q", "attn_k", "attn_v", "attn_out"}) {
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

}  // namespace corehead
