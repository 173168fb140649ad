#include "corehead/gguf_info.h"

#include <algorithm>
#include <cmath>

#include "ggml.h"
#include "gguf.h"
#include "gguf/gguf_file.h"
#include "image/image.h"
#include "vision/vision_model.h"

namespace corehead {

GgufSummary gguf_summary(const std::string& path) {
    const GgufFile f(path);
    gguf_context* g = f.gguf();
    GgufSummary s;
    s.path = path;
    s.version = gguf_get_version(g);
    s.file_size = f.file_size();
    s.alignment = gguf_get_alignment(g);
    s.data_offset = f.data_offset();
    s.data_size = s.file_size > s.data_offset ? s.file_size - s.data_offset : 0;
    const int64_t n = gguf_get_n_tensors(g);
    s.tensors.reserve(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        GgufTensorInfo t;
        t.name = gguf_get_tensor_name(g, i);
        t.type = ggml_type_name(gguf_get_tensor_type(g, i));
        t.offset = gguf_get_tensor_offset(g, i);
        t.n_bytes = gguf_get_tensor_size(g, i);
        if (const ggml_tensor* m = f.find_tensor(t.name)) t.shape.assign(m->ne, m->ne + ggml_n_dims(m));
        s.tensors.push_back(std::move(t));
    }
    return s;
}

VisionInput largest_vision_input(const std::string& mmproj_path) {
    const VisionModelFile m = open_mmproj(mmproj_path);
    const VisionHParams& hp = m.hp;
    // The largest square image every family keeps without scaling it down: the trained input, the
    // tile target (idefics3), or the pixel budget of dynamic resolution (Qwen-VL).
    int64_t side = std::max(hp.image_size, hp.preproc_image_size);
    if (hp.max_pixels > 0) side = std::max(side, static_cast<int64_t>(std::sqrt(static_cast<double>(hp.max_pixels))));
    side = std::min(side, static_cast<int64_t>(std::sqrt(static_cast<double>(kMaxImagePixels))));
    Image img;
    img.width = img.height = side;
    img.rgb.assign(static_cast<size_t>(side * side * 3), 128);
    VisionInput out;
    for (const VisionView& v : m.family->prepare(img, hp).views) {
        const int64_t n = (v.width / hp.patch_size) * (v.height / hp.patch_size);
        if (n > out.n_patches) out = {v.width, v.height, n};
    }
    if (m.file->find_tensor("v.class_embd")) out.n_patches += 1;  // the class token (CLIP)
    return out;
}

}  // namespace corehead
