#include "vision/vision_model.h"

#include "gguf/file_info.h"

namespace corehead {

VisionInfo vision_info(const VisionModelFile& m) {
    VisionInfo i;
    set_file_info(i, m);
    i.projector = m.hp.projector;
    i.image_size = m.hp.image_size;
    i.patch_size = m.hp.patch_size;
    i.n_embd = m.hp.n_embd;
    i.n_ff = m.hp.n_ff;
    i.n_layer = m.hp.n_layer;
    i.n_head = m.hp.n_head;
    i.n_out = m.hp.n_out;
    i.n_deepstack = static_cast<int64_t>(m.hp.deepstack_layers.size());
    return i;
}

VisionModelFile open_mmproj(const std::string& path) {
    VisionModelFile m;
    m.file = std::make_unique<GgufFile>(path);
    const GgufFile& f = *m.file;
    const std::string arch = f.architecture();
    if (arch != "clip") {
        f.fail("not an mmproj file: general.architecture is '" + arch +
               "' (a language model?); pass the model as the first argument and its mmproj-*.gguf as mmproj=");
    }
    auto projector = f.find_str("clip.projector_type");
    if (!projector) projector = f.find_str("clip.vision.projector_type");
    if (!projector) f.fail("missing 'clip.projector_type'");
    m.family = find_vision_family(*projector);
    if (!m.family) {
        std::string names;
        for (const auto& p : supported_projectors()) names += (names.empty() ? "" : ", ") + p;
        f.fail("projector type not supported yet: " + *projector + " (supported: " + names + ")");
    }
    m.hp.projector = *projector;
    read_common_vision_hparams(f, m.hp);
    m.family->read_hparams(f, m.hp);
    m.name = f.find_str("general.name").value_or("");
    m.file_type = f.find_int("general.file_type").value_or(-1);
    check_tensors(f, m.family->tensor_specs(f, m.hp));
    return m;
}

}  // namespace corehead
