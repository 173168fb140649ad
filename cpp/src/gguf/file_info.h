// What a validated model file (text or mmproj) holds before any weights are read, and the
// file-level fields TextInfo and VisionInfo share (path, name, type, tensor and parameter
// counts, size), filled once for both.
#pragma once
#include <memory>
#include <string>

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

template <typename Family, typename HParams>
struct ModelFile {
    std::unique_ptr<GgufFile> file;
    const Family* family = nullptr;
    HParams hp;
    std::string name;        // general.name
    int64_t file_type = -1;  // general.file_type
};

template <typename Info, typename Family, typename HParams>
void set_file_info(Info& i, const ModelFile<Family, HParams>& m) {
    const GgufFile& f = *m.file;
    i.path = f.path();
    i.name = m.name;
    i.file_type = m.file_type >= 0 ? file_type_name(m.file_type) : "unknown";
    i.n_tensors = f.n_tensors();
    for (const auto& t : f.tensor_names()) i.n_params += ggml_nelements(f.find_tensor(t));
    i.file_size = f.file_size();
}

}  // namespace corehead
