// Building blocks for decoder forward graphs, shared by every text family. A family's
// build() (text/<family>.cpp) writes its layer loop with these, the way llama.cpp's
// src/models/*.cpp do. Attention (dense and CoRe-sparse, text/attention.cpp) and its masks exist
// once, here; the head machinery (taps, interventions, head sums) is heads/head_graph.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ggml.h"
#include "heads/interventions.h"
#include "heads/taps.h"
#include "text/graph_inputs.h"
#include "text/hparams.h"
#include "text/text_weights.h"

namespace corehead {

class KVCache;
class SparseKVCache;
class HeadGraph;
class RecurrentState;

// One forward step: tokens (or input embeddings) appended at cache index n_past.
struct DecoderBatch {
    std::vector<int32_t> tokens;      // n_tokens ids, or empty when `embeddings` is used
    std::vector<float> embeddings;    // n_tokens * n_embd (image chunks)
    // Mixed batches (text and visual tokens in one forward pass): both `tokens` and `embeddings`
    // hold n_tokens rows and is_token[i] = 1 takes row i from the token table, 0 from
    // `embeddings` (whose token rows are zeros). Empty: not mixed.
    std::vector<float> is_token;
    std::vector<float> deepstack;     // n_deepstack * n_tokens * n_embd, layer-major (DeepStack image chunks)
    int64_t n_tokens = 0;
    int64_t n_past = 0;               // cache index of the first token
    std::vector<int32_t> positions;   // RoPE positions (n_tokens; 4*n_tokens for M-RoPE, section-major)
    bool bidirectional = false;       // tokens of this batch see each other (gemma3 image chunk)
    // Branches (several continuations of one cached prefix in one forward pass, e.g. the choices
    // of a multiple-choice probe): row r sees the cached keys before branch_prefix[r] and the
    // batch rows branch_first[r]..r, as if it sat at cache index branch_prefix[r] + r - branch_first[r].
    // Empty: a plain causal batch.
    std::vector<int32_t> branch_first;
    std::vector<int64_t> branch_prefix;
    std::vector<int32_t> output_rows; // batch rows whose logits are returned
    const TapRequest* taps = nullptr; // attention taps for this batch (nullptr = none)
    TapResult* tap_result = nullptr;  // filled after compute when taps is set
    const HeadInterventions* interventions = nullptr;  // head gates / means / knockouts (nullptr = none)
    HeadOutputSums* head_sums = nullptr;  // when set, per-head output sums over this batch's tokens are added
    // CoRe-sparse cache only: filled with SnapKV scores per layer ([h * n_kv_compact + slot]).
    std::vector<std::vector<float>>* sparse_scores = nullptr;
};

class DecoderGraph {
public:
    // Exactly one of `kv` (dense) and `skv` (CoRe-sparse, docs/architecture.md §6) is set.
    // `rs`: the recurrent layers' state (hybrid models; nullptr otherwise).
    DecoderGraph(ggml_context* ctx, ggml_cgraph* gf, const TextHParams& hp, const TextWeights& w, const KVCache* kv,
                 const SparseKVCache* skv, const DecoderBatch& batch, const RecurrentState* rs = nullptr);
    ~DecoderGraph();

    ggml_context* const ctx;
    ggml_cgraph* const gf;
    const TextHParams& hp;
    const TextWeights& w;
    const KVCache* const kv;
    const SparseKVCache* const skv;
    const RecurrentState* const rs;
    const DecoderBatch& batch;
    const int64_t n_tokens;
    const int64_t n_kv;  // keys visible after this batch

    // --- blocks for the families' build() ---
    // Token embeddings (get_rows) or the batch's input embeddings, [n_embd, n_tokens].
    // The batch's input rows: token-table rows (multiplied by token_scale: gemma3's sqrt(n_embd))
    // and/or given embeddings (image rows, never scaled).
    ggml_tensor* input_embeddings(float token_scale = 1.0f);
    ggml_tensor* rms_norm(ggml_tensor* x, ggml_tensor* weight);
    ggml_tensor* linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias = nullptr);
    // x: [head_dim, n_heads, n_tokens]. mode: 0 (normal), GGML_ROPE_TYPE_NEOX, GGML_ROPE_TYPE_MROPE or
    // GGML_ROPE_TYPE_IMROPE (interleaved sections, qwen3vl). `scaling`: linear or YaRN (usually
    // hp.rope_scaling; RopeScaling{} for unscaled layers).
    ggml_tensor* rope(ggml_tensor* x, int mode, float freq_base, const RopeScaling& scaling);
    // The same with the layer's own rotary dimensions and frequency factors (gemma4: its local
    // layers rotate every pair, its global ones the first pairs only, by factors ~1e30 on the rest).
    ggml_tensor* rope(ggml_tensor* x, int mode, float freq_base, const RopeScaling& scaling, int64_t n_rot,
                      ggml_tensor* freq_factors);
    // Stores k/v in the cache and attends over all visible keys. q: [hd, n_head, n_tokens] after
    // RoPE (the attention temperature, when the model has one, is applied here, so the dense and
    // CoRe-sparse paths and the taps all see it), k/v: [hd, n_head_kv, n_tokens]. Returns
    // [n_head*hd_v, n_tokens] (before the output projection). `gate` (gated attention, qwen35):
    // [n_head*hd_v, n_tokens] logits; the output is multiplied by sigmoid(gate) before the head
    // interventions and head sums see it (what enters the output projection is a head's output).
    ggml_tensor* attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale,
                           ggml_tensor* gate = nullptr);
    // A Gated DeltaNet layer (text/delta_net.cpp) on the normed input h [n_embd, n_tokens]: reads
    // and advances the layer's state in `rs`; returns [n_embd, n_tokens] (after ssm_out).
    ggml_tensor* delta_net(int64_t layer, ggml_tensor* h);
    ggml_tensor* ffn_swiglu(ggml_tensor* x, const LayerWeights& L);
    // Mixture of experts with SwiGLU experts: softmax router, top n_expert_used, weights renormalized.
    ggml_tensor* ffn_moe(ggml_tensor* x, const LayerWeights& L);
    // x plus the batch's DeepStack features for `layer` (x itself when there are none).
    ggml_tensor* deepstack(int64_t layer, ggml_tensor* x);
    ggml_tensor* ffn_geglu(ggml_tensor* x, const LayerWeights& L);
    // tanh-approximated GELU (transformers' gelu_pytorch_tanh) computed in f32.
    ggml_tensor* gelu_tanh(ggml_tensor* x);
    // Rows batch.output_rows of x [d, n_tokens] (x itself when every row is wanted). Families call
    // it on the attention output and the residual of the last layer, right after attention: what
    // follows (output projection, FFN) is then computed only for the rows whose logits are
    // returned, as llama.cpp does with its inp_out_ids.
    ggml_tensor* output_rows(ggml_tensor* x);
    // Final norm + LM head on the output rows only: [n_vocab, n_out] (softcapped by
    // hp.final_logit_softcap when set).
    ggml_tensor* logits(ggml_tensor* x);

    // --- graph inputs, masks and attention, for the attention paths and heads/ ---
    // An input tensor filled from `borrowed` (outlives the compute) or `owned` values.
    template <typename T>
    ggml_tensor* input(ggml_tensor* t, const T* borrowed) {
        return add_input(std::make_unique<ArrayInput<T>>(t, borrowed));
    }
    template <typename T>
    ggml_tensor* input(ggml_tensor* t, std::vector<T> owned) {
        return add_input(std::make_unique<ArrayInput<T>>(t, std::move(owned)));
    }
    // A mask [n_keys, n_rows, n_heads] (F16 for flash attention, F32 for soft_max) filled from
    // `visible`. With a `shared` name the mask is made once per graph and reused by every layer.
    template <typename F>
    ggml_tensor* mask(int64_t n_keys, int64_t n_rows, int64_t n_heads, ggml_type type, F&& visible,
                      const char* shared = nullptr) {
        if (ggml_tensor* t = shared ? find_shared_mask(shared) : nullptr) return t;  // before building a filler
        return new_mask(n_keys, n_rows, n_heads, type, Visibility(std::forward<F>(visible)), shared);
    }
    // Whether batch row `row` may see cache index `key`: causal order, the sliding window of
    // `swa` layers, and the bidirectional image chunk (every token of the batch sees the others).
    bool visible(int64_t row, int64_t key, bool swa) const;
    // The cache index batch row `row` has in a sequential run (its own, except in a branch batch).
    int64_t query_index(int64_t row) const;
    // The same for a key `key` seen from batch row `row` (cached keys keep their index).
    int64_t key_index(int64_t row, int64_t key) const;
    // Flash attention with f32 accumulation. Q [hd, n_rows, n_q], K/V [hd, n_keys, n_kv_heads].
    ggml_tensor* attend(ggml_tensor* Q, ggml_tensor* K, ggml_tensor* V, ggml_tensor* mask, float scale);
    // A node read back after compute (taps, head sums, SnapKV scores).
    void output(ggml_tensor* t);

    // Host-side data for the input tensors, once the graph is allocated.
    void set_inputs() const;
    // Copies taps, head sums and SnapKV scores to the batch's result pointers after compute.
    void read_outputs() const;

private:
    ggml_tensor* add_input(std::unique_ptr<GraphInput> in);
    ggml_tensor* find_shared_mask(const char* name) const;
    ggml_tensor* new_mask(int64_t n_keys, int64_t n_rows, int64_t n_heads, ggml_type type, Visibility visible,
                          const char* shared);
    // q times the per-token attention temperature (q itself when the model has none).
    ggml_tensor* attention_temperature(ggml_tensor* q);
    ggml_tensor* dense_attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale);
    // The CoRe-sparse attention: CoRe heads over the full part, the others over the compact part.
    ggml_tensor* sparse_attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale);
    // Rows `ids` of x [d, n, n_tokens] for every token: [d, |ids|, n_tokens].
    ggml_tensor* gather(ggml_tensor* x, const std::vector<int32_t>& ids);
    // Mask of the compact part for `layer`: shared per sliding-window kind, or per query head when
    // budget tokens differ per head in a sliding-window layer.
    ggml_tensor* compact_mask(int64_t layer, bool swa);
    // Visibility of compact slot j (cache position pos) from batch row `row`.
    bool compact_visible(int64_t row, int64_t j, int64_t pos, bool swa) const;
    void sparse_scores(int64_t layer, ggml_tensor* Q, ggml_tensor* K, float scale, bool swa);
    void read_sparse_scores() const;

    std::unique_ptr<HeadGraph> heads_;
    std::vector<std::unique_ptr<GraphInput>> inputs_;
    std::vector<std::pair<std::string, ggml_tensor*>> shared_masks_;  // by name (string literals)
    std::vector<std::pair<const std::vector<int32_t>*, ggml_tensor*>> gather_ids_;
    std::vector<std::pair<int64_t, ggml_tensor*>> score_outs_;  // (layer, SnapKV scores)
    ggml_tensor* inp_pos_ = nullptr;
    ggml_tensor* inp_attn_temp_ = nullptr;
    ggml_tensor* inp_out_rows_ = nullptr;
    ggml_tensor* inp_deepstack_ = nullptr;
};

}  // namespace corehead
