#include "vision/hparams.h"

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

void read_common_vision_hparams(const GgufFile& f, VisionHParams& hp) {
    auto req = [&](const std::string& key, int64_t max) {
        const int64_t v = f.get_int(key);
        if (v <= 0 || v > max) f.fail("metadata '" + key + "' = " + std::to_string(v) + " is out of range");
        return v;
    };
    if (auto has = f.find_bool("clip.has_vision_encoder"); has && !*has) {
        f.fail("this mmproj has no vision encoder (audio-only projectors are not supported)");
    }
    hp.image_size = req("clip.vision.image_size", 16384);
    hp.patch_size = req("clip.vision.patch_size", 1024);
    if (hp.image_size % hp.patch_size != 0) f.fail("clip.vision.image_size is not a multiple of clip.vision.patch_size");
    hp.n_embd = req("clip.vision.embedding_length", 1 << 16);
    hp.n_ff = req("clip.vision.feed_forward_length", 1 << 18);
    hp.n_layer = req("clip.vision.block_count", 1024);
    hp.n_head = req("clip.vision.attention.head_count", 1024);
    if (hp.n_embd % hp.n_head != 0) f.fail("clip.vision.embedding_length is not a multiple of the head count");
    hp.eps = f.find_float("clip.vision.attention.layer_norm_epsilon").value_or(1e-6f);
    if (!(hp.eps > 0.0f && hp.eps < 1.0f)) f.fail("clip.vision.attention.layer_norm_epsilon is out of range");
    for (const char* key : {"clip.vision.image_mean", "clip.vision.image_std"}) {
        auto v = f.find_float_array(key);
        if (!v) continue;
        if (v->size() != 3) f.fail(std::string("'") + key + "' must hold 3 values (RGB)");
        auto& dst = std::string(key).find("mean") != std::string::npos ? hp.image_mean : hp.image_std;
        for (int c = 0; c < 3; ++c) dst[c] = (*v)[c];
    }
    for (float s : hp.image_std) {
        if (!(s > 0.0f)) f.fail("clip.vision.image_std must be positive");
    }
    hp.use_gelu = f.find_bool("clip.use_gelu").value_or(true);
    if (f.find_bool("clip.use_silu").value_or(false)) hp.use_gelu = false;
    if (auto v = f.find_int_array("clip.vision.feature_layer")) hp.feature_layers = *v;
    hp.min_pixels = f.find_int("clip.vision.image_min_pixels").value_or(0);
    hp.max_pixels = f.find_int("clip.vision.image_max_pixels").value_or(0);
    hp.preproc_image_size = f.find_int("clip.vision.preproc_image_size").value_or(0);
    if (const ggml_tensor* down = f.find_tensor("v.blk.0.ffn_down.weight")) {
        hp.ffn_swapped = hp.n_ff != hp.n_embd && down->ne[0] == hp.n_embd;
    }
}

}  // namespace corehead
