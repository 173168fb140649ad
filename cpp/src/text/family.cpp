#include "text/family.h"

#include "gguf/gguf_file.h"

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

void add_moe_ffn_tensors(const TextHParams& hp, TextTensorTable& t) {
    const int64_t E = hp.n_embd, X = hp.n_expert, F = hp.n_ff_exp;
    t.add_layers("ffn_norm.weight", {E}, &LayerWeights::ffn_norm);
    t.add_layers("ffn_gate_inp.weight", {E, X}, &LayerWeights::ffn_gate_inp);
    t.add_layers("ffn_gate_exps.weight", {E, F, X}, &LayerWeights::ffn_gate_exps);
    t.add_layers("ffn_up_exps.weight", {E, F, X}, &LayerWeights::ffn_up_exps);
    t.add_layers("ffn_down_exps.weight", {F, E, X}, &LayerWeights::ffn_down_exps);
}

void read_rope_sections(const GgufFile& f, TextHParams& hp) {
    const std::string key = hp.arch + ".rope.dimension_sections";
    auto sections = f.find_int_array(key);
    if (!sections) f.fail("missing metadata key '" + key + "' (M-RoPE sections)");
    if (sections->size() < 3 || sections->size() > 4) f.fail("'" + key + "' must hold 3 or 4 values");
    int64_t total = 0;
    for (size_t i = 0; i < sections->size(); ++i) {
        const int64_t v = (*sections)[i];
        if (v < 0 || v > hp.n_rot) f.fail("'" + key + "' has an out-of-range value");
        hp.rope_sections[i] = static_cast<int>(v);
        total += v;
    }
    if (total * 2 > hp.n_rot) {
        f.fail("'" + key + "' sums to " + std::to_string(total) + " pairs, more than the " + std::to_string(hp.n_rot / 2) +
               " rotary pairs per head");
    }
}

}  // namespace corehead
