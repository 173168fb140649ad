// Hyper-parameters of a vision encoder + projector (an mmproj GGUF, general.architecture = clip).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace corehead {

class GgufFile;

struct VisionHParams {
    std::string projector;     // clip.projector_type: mlp, idefics3, qwen2vl_merger, ...
    int64_t image_size = 0;    // square input side the encoder was trained on
    int64_t patch_size = 0;
    int64_t n_embd = 0;
    int64_t n_ff = 0;
    int64_t n_layer = 0;
    int64_t n_head = 0;
    float eps = 1e-6f;
    int64_t n_out = 0;         // embedding size after the projector (must equal the text model's n_embd)
    std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f};
    std::array<float, 3> image_std{0.5f, 0.5f, 0.5f};
    bool use_gelu = true;      // else SiLU/quick-GELU per family
    int64_t scale_factor = 0;  // idefics3 pixel shuffle
    int64_t spatial_merge = 0; // qwen2vl patch merger (2 -> 2x2 patches per token)
    int64_t window_size = 0;   // qwen2.5vl window attention (pixels)
    std::vector<int64_t> full_attn_layers;  // qwen2.5vl layers with full attention
    std::vector<int64_t> feature_layers;    // llava: which layers feed the projector
    int64_t min_pixels = 0, max_pixels = 0; // qwen dynamic resolution
    // qwen videos: the pixel bounds of a frame (Qwen3-VL: of all frames together) and
    // Qwen2.5-VL's tokens_per_second (M-RoPE temporal steps per second of video).
    int64_t video_min_pixels = 0, video_max_pixels = 0;
    double tokens_per_second = 0.0;
    int64_t preproc_image_size = 0;         // idefics3 tile target side
    // qwen3vl DeepStack: the ViT blocks whose outputs also go, merged, to the text model; the
    // projector output per visual token is then n_out * (1 + deepstack_layers.size()).
    std::vector<int64_t> deepstack_layers;
    int64_t min_tiles = 0, max_tiles = 0;   // internvl dynamic tiling (tiles per image)
    // Older converters (LLaVA's legacy script) wrote the ViT MLP's up and down weights under
    // each other's names; detected from the shapes, as llama.cpp does.
    bool ffn_swapped = false;

    int64_t patches_per_side() const { return patch_size > 0 ? image_size / patch_size : 0; }
    int64_t n_out_total() const { return n_out * (1 + static_cast<int64_t>(deepstack_layers.size())); }
};

// Reads clip.vision.* keys shared by all projectors and checks their ranges.
void read_common_vision_hparams(const GgufFile& f, VisionHParams& hp);

}  // namespace corehead
