#include "gguf/tensor_check.h"

#include <sstream>
#include <unordered_map>

#include "ggml.h"
#include "gguf/gguf_file.h"

namespace corehead {

namespace {

std::string shape_str(const int64_t* ne, int n) {
    std::ostringstream os;
    os << '[';
    for (int i = 0; i < n; ++i) os << (i ? ", " : "") << ne[i];
    os << ']';
    return os.str();
}

bool is_float_or_quant(ggml_type t) {
    switch (t) {
        case GGML_TYPE_I8: case GGML_TYPE_I16: case GGML_TYPE_I32: case GGML_TYPE_I64: case GGML_TYPE_F64:
            return false;
        default:
            return ggml_get_type_traits(t)->blck_size > 0;
    }
}

}  // namespace

void check_tensors(const GgufFile& file, const std::vector<TensorSpec>& specs) {
    std::unordered_map<std::string, const TensorSpec*> by_name;
    for (const auto& s : specs) by_name[s.name] = &s;

    for (const auto& name : file.tensor_names()) {
        if (!by_name.count(name)) {
            file.fail("unexpected tensor '" + name + "' for architecture '" + file.architecture() +
                      "' (is this the right file, or a variant corehead does not support yet?)");
        }
    }
    for (const auto& s : specs) {
        const ggml_tensor* t = file.find_tensor(s.name);
        if (!t) {
            if (s.required) file.fail("missing tensor '" + s.name + "'");
            continue;
        }
        const int n_dims = ggml_n_dims(t);
        if (!s.shape.empty()) {
            bool ok = n_dims <= static_cast<int>(s.shape.size());
            for (int i = 0; ok && i < GGML_MAX_DIMS; ++i) {
                const int64_t want = i < static_cast<int>(s.shape.size()) ? s.shape[i] : 1;
                ok = t->ne[i] == want;
            }
            if (!ok) {
                file.fail("tensor '" + s.name + "' has shape " + shape_str(t->ne, n_dims) + ", expected " +
                          shape_str(s.shape.data(), static_cast<int>(s.shape.size())) +
                          " from the hyper-parameters in the file's metadata");
            }
        }
        if (n_dims <= 1 && t->type != GGML_TYPE_F32) {
            file.fail("tensor '" + s.name + "' is " + ggml_type_name(t->type) + "; vectors (norms, biases) must be F32");
        }
        if (n_dims >= 2 && !is_float_or_quant(t->type)) {
            file.fail("tensor '" + s.name + "' has unsupported type " + ggml_type_name(t->type));
        }
    }
}

}  // namespace corehead
