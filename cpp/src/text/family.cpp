#include "text/family.h"

namespace corehead {

TextTensorTable text_tensor_table(const TextFamily& family, const TextHParams& hp) {
    TextTensorTable t(hp.n_layer);
    family.tensors(hp, t);
    return t;
}

void add_embedding_tensors(const TextHParams& hp, TextTensorTable& t, bool rope_freqs) {
    t.add("token_embd.weight", {hp.n_embd, hp.n_vocab}, &TextWeights::tok_embd);
    t.add("output_norm.weight", {hp.n_embd}, &TextWeights::output_norm);
    t.add("output.weight", {hp.n_embd, hp.n_vocab}, &TextWeights::output, false);
    if (rope_freqs) t.add("rope_freqs.weight", {hp.n_rot / 2}, &TextWeights::rope_freqs, false);
}

void add_attention_tensors(const TextHParams& hp, TextTensorTable& t, bool biases, bool qkv_bias_required) {
    const int64_t E = hp.n_embd;
    t.add_layers("attn_norm.weight", {E}, &LayerWeights::attn_norm);
    t.add_layers("attn_q.weight", {E, hp.n_embd_q()}, &LayerWeights::wq);
    t.add_layers("attn_k.weight", {E, hp.n_embd_k_gqa()}, &LayerWeights::wk);
    t.add_layers("attn_v.weight", {E, hp.n_embd_v_gqa()}, &LayerWeights::wv);
    t.add_layers("attn_output.weight", {hp.n_head * hp.head_dim_v, E}, &LayerWeights::wo);
    if (!biases) return;
    t.add_layers("attn_q.bias", {hp.n_embd_q()}, &LayerWeights::bq, qkv_bias_required);
    t.add_layers("attn_k.bias", {hp.n_embd_k_gqa()}, &LayerWeights::bk, qkv_bias_required);
    t.add_layers("attn_v.bias", {hp.n_embd_v_gqa()}, &LayerWeights::bv, qkv_bias_required);
    t.add_layers("attn_output.bias", {E}, &LayerWeights::bo, false);
}

void add_ffn_tensors(const TextHParams& hp, TextTensorTable& t) {
    const int64_t E = hp.n_embd;
    t.add_layers("ffn_norm.weight", {E}, &LayerWeights::ffn_norm);
    t.add_layers("ffn_gate.weight", {E, hp.n_ff}, &LayerWeights::ffn_gate);
    t.add_layers("ffn_up.weight", {E, hp.n_ff}, &LayerWeights::ffn_up);
    t.add_layers("ffn_down.weight", {hp.n_ff, E}, &LayerWeights::ffn_down);
}

}  // namespace corehead
