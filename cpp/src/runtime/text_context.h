// Runs decoder forward passes for one sequence: owns the KV cache and the scheduler.
#pragma once
#include <memory>
#include <vector>

#include "ggml.h"
#include "heads/interventions.h"
#include "runtime/sparse_kv.h"
#include "text/graph.h"


namespace corehead {

class GraphRunner;
class KVCache;
class RecurrentState;
class SparseKVCache;
class TextFamily;
struct Backends;

class TextContext {
public:
    // `sparse` (optional): start with the CoRe-sparse cache instead of the dense one.
    TextContext(const TextFamily& family, const TextHParams& hp, const TextWeights& w, const Backends& backends,
                int64_t n_ctx, ggml_type kv_type, const SparseConfig* sparse = nullptr);
    ~TextContext();

    // Appends `batch` at the current position (batch.n_past is set here) and returns the logits of
    // batch.output_rows, row-major [n_out, n_vocab]. Throws ContextOverflow when it does not fit.
    std::vector<float> decode(DecoderBatch& batch);

    int64_t n_past() const { return n_past_; }
    bool has_recurrent_state() const { return rs_ != nullptr; }
    int64_t n_ctx() const;
    void reset();
    // Default RoPE position of cache index i is i + offset (after an M-RoPE image the text
    // continues at a position other than its cache index).
    void set_pos_offset(int64_t offset) { pos_offset_ = offset; }
    // Forget everything after position n (for re-using a shared prefix). A hybrid model's
    // recurrent state cannot be rewound: truncating one to n < n_past throws InputError (run the
    // prompt again instead).
    void truncate(int64_t n);
    size_t kv_bytes() const;

    // --- CoRe-sparse cache (docs/architecture.md §6) ---
    // Replaces the cache: the dense one (nullptr) or a CoRe-sparse one; the context is reset and
    // the old cache's memory freed before the new one is allocated.
    void set_sparse(const SparseConfig* cfg);
    const SparseKVCache* sparse() const { return skv_.get(); }
    // Right after reset(): where the next prompt's visual tokens are (validated now; sparse only).
    void set_plan(const SparsePlan& plan);
    KVStats kv_stats() const;  // dense: everything counts as the full part
    // Head interventions applied to every following decode (nullptr = none); not owned.
    void set_interventions(const HeadInterventions* iv) { interventions_ = iv; }
    const HeadInterventions* interventions() const { return interventions_; }

private:
    const TextFamily& family_;
    const TextHParams& hp_;
    const TextWeights& w_;
    std::unique_ptr<KVCache> kv_;
    std::unique_ptr<SparseKVCache> skv_;
    std::unique_ptr<RecurrentState> rs_;  // hybrid models' recurrent layers (nullptr otherwise)
    int64_t n_ctx_;
    ggml_type kv_type_;
    const Backends& backends_;
    bool fresh_ = true;  // reset() since the last decode
    std::unique_ptr<GraphRunner> runner_;
    int64_t n_past_ = 0;
    const HeadInterventions* interventions_ = nullptr;
    int64_t pos_offset_ = 0;
    bool last_knocked_ = false;  // the previous graph had knockout masks
};

}  // namespace corehead
