#include "runtime/recurrent_state.h"

#include <string>

namespace corehead {

RecurrentState::RecurrentState(const TextHParams& hp, ggml_backend_t backend) {
    tensors_ = BackendTensors(backend, static_cast<size_t>(2 * hp.n_layer), [&](ggml_context* ctx) {
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            if (!hp.is_recurrent(l)) {
                conv_.push_back(nullptr);
                delta_.push_back(nullptr);
                continue;
            }
            conv_.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, hp.ssm_d_conv - 1, hp.ssm_conv_channels()));
            delta_.push_back(ggml_new_tensor_3d(ctx, GGML_TYPE_F32, hp.ssm_d_state, hp.ssm_d_state, hp.ssm_dt_rank));
        }
    }, "the recurrent (Gated DeltaNet) state");
}

void RecurrentState::clear() { tensors_.clear(); }

}  // namespace corehead
