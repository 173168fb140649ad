// Building blocks for decoder forward graphs, shared by every text family. A family's
// build() (text/<family>.cpp) writes its layer loop with these, the way llama.cpp's
// src/models/*.cpp do; attention, KV storage and masks live here once.
#pragma once
#include <cstdint>
#include <vector>

#include "ggml.h"
#include "heads/interventions.h"
#include "heads/taps.h"
#include "text/hparams.h"
#include "text/text_weights.h"

namespace corehead {

class KVCache;
class SparseKVCache;

// One forward step: tokens (or input embeddings) appended at cache index n_past.
struct DecoderBatch {
    std::vector<int32_t> tokens;      // n_tokens ids, or empty when `embeddings` is used
    std::vector<float> embeddings;    // n_tokens * n_embd (image chunks)
    int64_t n_tokens = 0;
    int64_t n_past = 0;               // cache index of the first token
    std::vector<int32_t> positions;   // RoPE positions (n_tokens; 4*n_tokens for M-RoPE, section-major)
    bool bidirectional = false;       // tokens of this batch see each other (gemma3 image chunk)
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
    DecoderGraph(ggml_context* ctx, ggml_cgraph* gf, const TextHParams& hp, const TextWeights& w, const KVCache* kv,
                 const SparseKVCache* skv, const DecoderBatch& batch);

    ggml_context* const ctx;
    ggml_cgraph* const gf;
    const TextHParams& hp;
    const TextWeights& w;
    const KVCache* const kv;
    const SparseKVCache* const skv;
    const DecoderBatch& batch;
    const int64_t n_tokens;
    const int64_t n_kv;  // keys visible after this batch

    // Token embeddings (get_rows) or the batch's input embeddings, [n_embd, n_tokens].
    ggml_tensor* input_embeddings();
    ggml_tensor* rms_norm(ggml_tensor* x, ggml_tensor* weight);
    ggml_tensor* linear(ggml_tensor* x, ggml_tensor* weight, ggml_tensor* bias = nullptr);
    // x: [head_dim, n_heads, n_tokens]. mode: 0 (normal), GGML_ROPE_TYPE_NEOX, GGML_ROPE_TYPE_MROPE.
    ggml_tensor* rope(ggml_tensor* x, int mode, float freq_base, float freq_scale);
    // Stores k/v in the cache and attends over all visible keys. q: [hd, n_head, n_tokens],
    // k/v: [hd, n_head_kv, n_tokens]. Returns [n_head*hd_v, n_tokens] (before the output projection).
    ggml_tensor* attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale);
    ggml_tensor* ffn_swiglu(ggml_tensor* x, const LayerWeights& L);
    ggml_tensor* ffn_geglu(ggml_tensor* x, const LayerWeights& L);
    // tanh-approximated GELU (transformers' gelu_pytorch_tanh) computed in f32.
    ggml_tensor* gelu_tanh(ggml_tensor* x);
    // Rows batch.output_rows of x [d, n_tokens] (x itself when every row is wanted). Families call
    // it on the attention output and the residual of the last layer, right after attention: what
    // follows (output projection, FFN) is then computed only for the rows whose logits are
    // returned, as llama.cpp does with its inp_out_ids.
    ggml_tensor* output_rows(ggml_tensor* x);
    // Final norm + LM head on the output rows only: [n_vocab, n_out].
    ggml_tensor* logits(ggml_tensor* x);

    // Host-side data for the input tensors, once the graph is allocated.
    void set_inputs() const;
    // Copies tapped attention to batch.tap_result, once the graph has been computed.
    void read_outputs() const;

private:
    ggml_tensor* mask(bool swa);
    // The CoRe-sparse attention: CoRe heads over the full part, the others over the compact part.
    ggml_tensor* sparse_attention(int64_t layer, ggml_tensor* q, ggml_tensor* k, ggml_tensor* v, float scale);
    // Rows `ids` of x [d, n, n_tokens] for every token: [d, |ids|, n_tokens].
    ggml_tensor* gather(ggml_tensor* x, const std::vector<int32_t>& ids);
    // Compact-part masks: shared per sliding-window kind, or per head for `layer` ([n_kv_c, n_tokens(, n_q)]).
    ggml_tensor* compact_mask(int64_t layer, bool swa);
    // Visibility of compact slot j (cache position pos) from batch row `row`.
    bool compact_visible(int64_t row, int64_t j, int64_t pos, bool swa) const;
    void sparse_scores(int64_t layer, ggml_tensor* q_other, ggml_tensor* K, float scale, bool swa);
    void set_sparse_inputs() const;
    void read_sparse_outputs() const;
    struct IndexInput {
        ggml_tensor* tensor;
        const std::vector<int32_t>* ids;
    };
    std::vector<IndexInput> index_inputs_;
    ggml_tensor* inp_mask_c_ = nullptr;
    ggml_tensor* inp_mask_c_swa_ = nullptr;
    struct LayerMask {
        int64_t layer;
        ggml_tensor* tensor;
    };
    std::vector<LayerMask> layer_masks_c_;
    ggml_tensor* inp_score_mask_ = nullptr;
    ggml_tensor* inp_score_mask_swa_ = nullptr;
    int64_t n_score_rows_ = 0;
    struct ScoreOut {
        int64_t layer;
        ggml_tensor* scores;
    };
    std::vector<ScoreOut> score_outs_;
    // Side branch for tapped rows: P over all keys and its masses (see heads/taps.h).
    void tap_attention(int64_t layer, ggml_tensor* q, ggml_tensor* K, float scale);
    bool visible(int64_t row, int64_t key, bool swa) const;
    // Per-head attention mask for a layer with knockouts: [n_kv, n_rows, n_head].
    ggml_tensor* knockout_mask(int64_t layer, bool taps);
    // Applies gates/means to the attention output [hd*n_head, n_tokens] and records head sums.
    ggml_tensor* intervene(int64_t layer, ggml_tensor* out);
    struct LayerInput {
        int64_t layer;
        ggml_tensor* tensor;
        int kind;  // 0 gate, 1 bias, 2 knockout mask (main), 3 knockout mask (taps)
    };
    std::vector<LayerInput> layer_inputs_;
    struct HeadSumOut {
        int64_t layer;
        ggml_tensor* sums;
    };
    std::vector<HeadSumOut> head_sum_outs_;
    ggml_tensor* inp_tap_rows_ = nullptr;
    ggml_tensor* inp_tap_mask_ = nullptr;
    ggml_tensor* inp_tap_mask_swa_ = nullptr;
    ggml_tensor* inp_relevance_ = nullptr;
    struct TapOut {
        int64_t layer;
        ggml_tensor* rows;
        ggml_tensor* masses;
    };
    std::vector<TapOut> tap_outs_;
    ggml_tensor* inp_tokens_ = nullptr;
    ggml_tensor* inp_embd_ = nullptr;
    ggml_tensor* inp_pos_ = nullptr;
    ggml_tensor* inp_mask_ = nullptr;
    ggml_tensor* inp_mask_swa_ = nullptr;
    ggml_tensor* inp_out_rows_ = nullptr;
};

}  // namespace corehead
