#include "text/graph_inputs.h"

#include <cmath>
#include <limits>

#include "ggml-backend.h"

namespace corehead {

template <typename T>
void ArrayInput<T>::set_input() const {
    ggml_backend_tensor_set(tensor, data_, 0, ggml_nbytes(tensor));
}
template class ArrayInput<int32_t>;
template class ArrayInput<float>;

float AttentionTemperatureInput::value(int64_t pos, float scale, int64_t length) {
    const double steps = std::floor(static_cast<double>(pos) / static_cast<double>(length));
    return static_cast<float>(1.0 + scale * std::log1p(steps));
}

void AttentionTemperatureInput::set_input() const {
    const int64_t n = ggml_nelements(tensor);
    std::vector<float> t(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) t[i] = value(positions_[i], scale_, length_);
    ggml_backend_tensor_set(tensor, t.data(), 0, ggml_nbytes(tensor));
}

void MaskInput::set_input() const {
    const int64_t n_keys = tensor->ne[0], n_rows = tensor->ne[1], n_heads = tensor->ne[2];
    const size_t n = static_cast<size_t>(n_keys * n_rows * n_heads);
    const float ninf = -std::numeric_limits<float>::infinity();
    if (tensor->type == GGML_TYPE_F32) {
        std::vector<float> m(n);
        for (int64_t h = 0; h < n_heads; ++h) {
            for (int64_t r = 0; r < n_rows; ++r) {
                float* dst = m.data() + (h * n_rows + r) * n_keys;
                for (int64_t j = 0; j < n_keys; ++j) dst[j] = visible_(h, r, j) ? 0.0f : ninf;
            }
        }
        ggml_backend_tensor_set(tensor, m.data(), 0, n * sizeof(float));
        return;
    }
    const ggml_fp16_t zero = ggml_fp32_to_fp16(0.0f), hidden = ggml_fp32_to_fp16(ninf);
    std::vector<ggml_fp16_t> m(n);
    for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t r = 0; r < n_rows; ++r) {
            ggml_fp16_t* dst = m.data() + (h * n_rows + r) * n_keys;
            for (int64_t j = 0; j < n_keys; ++j) dst[j] = visible_(h, r, j) ? zero : hidden;
        }
    }
    ggml_backend_tensor_set(tensor, m.data(), 0, n * sizeof(ggml_fp16_t));
}

}  // namespace corehead
