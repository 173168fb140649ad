// The Gated DeltaNet block (linear attention of Qwen3.5's recurrent layers), as transformers'
// Qwen3_5GatedDeltaNet computes it (docs/qwen35.md):
//
//   [q k v] = silu(causal depthwise conv over time (kernel ssm_d_conv) of attn_qkv · h)
//   q, k    = l2-normalized per key head;  beta = sigmoid(ssm_beta · h)
//   decay   = exp(g), g = ssm_a · softplus(ssm_alpha · h + ssm_dt)   (ssm_a = -exp(A_log))
//   per value head: S <- decay · S;  S <- S + k ⊗ beta (v - Sᵀk);  out = Sᵀ q / sqrt(d)
//   y       = ssm_out · (RMSNorm(out) · ssm_norm · silu(attn_gate · h))
//             (value-head ablation: a per-head 0/1 gate on the bracket, heads/interventions.h)
//
// The conv window and S are the layer's state (runtime/recurrent_state.h): the batch's inputs are
// appended to the stored window before the convolution and the window's tail is written back;
// ggml_gated_delta_net starts from the stored S and returns the final one, copied back. Key heads
// are shared by value heads tiled (value head j reads key head j mod n_k): the converter reorders
// the value heads from transformers' grouped order to that one.
#include <cmath>

#include "runtime/recurrent_state.h"
#include "text/graph.h"

namespace corehead {

namespace {

// x / sqrt(Σx² + eps) along rows (transformers' l2norm), from RMSNorm: rms_norm(x, eps/n) / sqrt(n).
ggml_tensor* l2_norm(ggml_context* ctx, ggml_tensor* x, float eps) {
    const float n = static_cast<float>(x->ne[0]);
    return ggml_scale(ctx, ggml_rms_norm(ctx, x, eps / n), 1.0f / std::sqrt(n));
}

}  // namespace

ggml_tensor* DecoderGraph::delta_net(int64_t layer, ggml_tensor* h) {
    const LayerWeights& L = w.layers[layer];
    const int64_t S = hp.ssm_d_state, Hk = hp.ssm_n_group, Hv = hp.ssm_dt_rank, T = n_tokens;
    const int64_t channels = hp.ssm_conv_channels(), key_dim = S * Hk, K = hp.ssm_d_conv;
    ggml_tensor* conv_state = rs->conv(layer);    // [K-1, channels]
    ggml_tensor* delta_state = rs->delta(layer);  // [S, S, Hv]

    ggml_tensor* qkv = linear(h, L.wqkv);     // [channels, T]
    ggml_tensor* z = linear(h, L.wqkv_gate);  // [Hv*S, T]
    ggml_tensor* beta = ggml_sigmoid(ctx, linear(h, L.ssm_beta));  // [Hv, T]
    ggml_tensor* g = ggml_mul(ctx, ggml_softplus(ctx, ggml_add(ctx, linear(h, L.ssm_alpha), L.ssm_dt)), L.ssm_a);

    // Causal conv over [stored window | this batch] along time (dim 0 after the transpose).
    ggml_tensor* window = ggml_concat(ctx, ggml_reshape_3d(ctx, conv_state, K - 1, channels, 1),
                                      ggml_reshape_3d(ctx, ggml_cont(ctx, ggml_transpose(ctx, qkv)), T, channels, 1), 0);
    ggml_tensor* tail = ggml_view_2d(ctx, window, K - 1, channels, window->nb[1], ggml_row_size(window->type, T));
    ggml_build_forward_expand(gf, ggml_cpy(ctx, tail, conv_state));
    ggml_tensor* mixed = ggml_silu(ctx, ggml_ssm_conv(ctx, window, L.ssm_conv1d));  // [channels, T, 1]

    const size_t es = ggml_element_size(mixed), row = mixed->nb[1];
    ggml_tensor* q = ggml_view_4d(ctx, mixed, S, Hk, T, 1, S * es, row, row * T, 0);
    ggml_tensor* k = ggml_view_4d(ctx, mixed, S, Hk, T, 1, S * es, row, row * T, key_dim * es);
    ggml_tensor* v = ggml_view_4d(ctx, mixed, S, Hv, T, 1, S * es, row, row * T, 2 * key_dim * es);
    q = l2_norm(ctx, q, 1e-6f);  // transformers' use_qk_l2norm_in_kernel eps
    k = l2_norm(ctx, k, 1e-6f);

    ggml_tensor* state = ggml_reshape_4d(ctx, delta_state, S, S, Hv, 1);
    ggml_tensor* res = ggml_gated_delta_net(ctx, q, k, v, ggml_reshape_4d(ctx, g, 1, Hv, T, 1),
                                            ggml_reshape_4d(ctx, beta, 1, Hv, T, 1), state, /*K=*/1);
    const size_t rs_es = ggml_element_size(res);
    ggml_tensor* out = ggml_view_3d(ctx, res, S, Hv, T, S * rs_es, S * Hv * rs_es, 0);  // [S, Hv, T]
    ggml_tensor* final_state = ggml_view_1d(ctx, res, S * S * Hv, S * Hv * T * rs_es);
    ggml_build_forward_expand(gf, ggml_cpy(ctx, final_state, ggml_reshape_1d(ctx, delta_state, S * S * Hv)));

    // Gated RMSNorm over each value head (weight as stored: no +1), then the output projection.
    ggml_tensor* y = ggml_mul(ctx, ggml_mul(ctx, ggml_rms_norm(ctx, out, hp.rms_eps), L.ssm_norm),
                              ggml_silu(ctx, ggml_reshape_3d(ctx, z, S, Hv, T)));
    // DeltaNet value-head ablation: a 0/1 gate per value head on what enters ssm_out (transformers'
    // out_proj input); the state above is untouched. Absent: the graph is the unablated one.
    if (batch.interventions && batch.interventions->value_gates(layer)) {
        y = ggml_mul(ctx, y, input(ggml_new_tensor_3d(ctx, GGML_TYPE_F32, 1, Hv, 1),
                                   batch.interventions->layers[layer].value_gate.data()));
    }
    return linear(ggml_reshape_2d(ctx, y, S * Hv, T), L.ssm_out);
}

}  // namespace corehead
