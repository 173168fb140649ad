#include "vision/family.h"

#include "vision/families.h"

namespace corehead {

namespace {

const std::vector<const VisionFamily*>& registry() {
    static const std::vector<const VisionFamily*> families = {
        &llava_mlp_family(), &idefics3_family(), &qwen2vl_merger_family(), &qwen25vl_merger_family(),
        &gemma3_vision_family(),
    };
    return families;
}

}  // namespace

const VisionFamily* find_vision_family(const std::string& projector) {
    for (const VisionFamily* f : registry()) {
        if (projector == f->projector()) return f;
    }
    return nullptr;
}

std::vector<std::string> supported_projectors() {
    std::vector<std::string> out;
    for (const VisionFamily* f : registry()) out.emplace_back(f->projector());
    return out;
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
