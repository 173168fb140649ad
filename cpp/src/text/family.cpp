#include "text/family.h"

#include "text/families.h"

namespace corehead {

namespace {

const std::vector<const TextFamily*>& registry() {
    static const std::vector<const TextFamily*> families = {
        &llama_family(), &qwen2_family(), &qwen2vl_family(), &gemma3_family(),
    };
    return families;
}

}  // namespace

const TextFamily* find_text_family(const std::string& arch) {
    for (const TextFamily* f : registry()) {
        if (arch == f->arch()) return f;
    }
    return nullptr;
}

std::vector<std::string> supported_text_archs() {
    std::vector<std::string> out;
    for (const TextFamily* f : registry()) out.emplace_back(f->arch());
    return out;
}

std::vector<TensorSpec> llama_like_tensor_specs(const TextHParams& hp, bool qkv_bias_required) {
    const int64_t E = hp.n_embd;
    std::vector<TensorSpec> s = {
        {"token_embd.weight", {E, hp.n_vocab}},
        {"output_norm.weight", {E}},
        {"output.weight", {E, hp.n_vocab}, false},
        {"rope_freqs.weight", {hp.n_rot / 2}, false},
    };
    for (int64_t i = 0; i < hp.n_layer; ++i) {
        const std::string b = "blk." + std::to_string(i) + ".";
        s.push_back({b + "attn_norm.weight", {E}});
        s.push_back({b + "attn_q.weight", {E, hp.n_embd_q()}});
        s.push_back({b + "attn_k.weight", {E, hp.n_embd_k_gqa()}});
        s.push_back({b + "attn_v.weight", {E, hp.n_embd_v_gqa()}});
        s.push_back({b + "attn_q.bias", {hp.n_embd_q()}, qkv_bias_required});
        s.push_back({b + "attn_k.bias", {hp.n_embd_k_gqa()}, qkv_bias_required});
        s.push_back({b + "attn_v.bias", {hp.n_embd_v_gqa()}, qkv_bias_required});
        s.push_back({b + "attn_output.weight", {hp.n_head * hp.head_dim_v, E}});
        s.push_back({b + "attn_output.bias", {E}, false});
        s.push_back({b + "ffn_norm.weight", {E}});
        s.push_back({b + "ffn_gate.weight", {E, hp.n_ff}});
        s.push_back({b + "ffn_up.weight", {E, hp.n_ff}});
        s.push_back({b + "ffn_down.weight", {hp.n_ff, E}});
    }
    return s;
}

}  // namespace corehead
