#include "text/text_weights.h"

#include <string>

#include "runtime/weights.h"
#include "text/hparams.h"

namespace corehead {

TextWeights resolve_text_weights(const Weights& w, const TextHParams& hp) {
    TextWeights t;
    t.tok_embd = w.get("token_embd.weight");
    t.output_norm = w.get("output_norm.weight");
    t.output = w.find("output.weight");
    if (!t.output) t.output = t.tok_embd;  // tied embeddings
    t.rope_freqs = w.find("rope_freqs.weight");
    t.layers.resize(hp.n_layer);
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        LayerWeights& L = t.layers[i];
        L.attn_norm = w.get(b + "attn_norm.weight");
        L.wq = w.get(b + "attn_q.weight");
        L.wk = w.get(b + "attn_k.weight");
        L.wv = w.get(b + "attn_v.weight");
        L.wo = w.get(b + "attn_output.weight");
        L.bq = w.find(b + "attn_q.bias");
        L.bk = w.find(b + "attn_k.bias");
        L.bv = w.find(b + "attn_v.bias");
        L.bo = w.find(b + "attn_output.bias");
        L.q_norm = w.find(b + "attn_q_norm.weight");
        L.k_norm = w.find(b + "attn_k_norm.weight");
        L.attn_post_norm = w.find(b + "post_attention_norm.weight");
        L.ffn_norm = w.get(b + "ffn_norm.weight");
        L.ffn_gate = w.get(b + "ffn_gate.weight");
        L.ffn_up = w.get(b + "ffn_up.weight");
        L.ffn_down = w.get(b + "ffn_down.weight");
        L.ffn_post_norm = w.find(b + "post_ffw_norm.weight");
    }
    return t;
}

}  // namespace corehead
