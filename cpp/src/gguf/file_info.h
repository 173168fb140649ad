// The file-level fields TextInfo and VisionInfo share (path, name, type, tensor and parameter
// counts, size), filled once for both.
#pragma once
#include <string>

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

template <typename Info>
void set_file_info(Info& i, const GgufFile& f, const std::string& name, int64_t file_type) {
    i.path = f.path();
    i.name = name;
    i.file_type = file_type >= 0 ? file_type_name(file_type) : "unknown";
    i.n_tensors = f.n_tensors();
    for (const auto& t : f.tensor_names()) i.n_params += ggml_nelements(f.find_tensor(t));
    i.file_size = f.file_size();
}

}  // namespace corehead
