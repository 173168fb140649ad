// The CoRe-sparse KV cache (docs/architecture.md §6): per layer a *full* part for the CoRe KV heads (every
// token) and a *compact* part for the other KV heads (text tokens, the first `sink` tokens of the
// sequence and, optionally, `visual_budget` visual tokens per image chosen SnapKV-style).
//
// Both parts keep the head-grouped layout of KVCache ([head_dim, slots, heads]). The full part is
// indexed by cache position like the dense cache. The compact part is a list of slots, each with
// the cache position of its token: during an image chunk (the visual tokens of one image that
// no text separates: one view, or all the tiles of an InternVL image) they are appended to both
// parts, and the chunk is prefilled densely; once the chunk is over, later queries (text, or the
// next image's chunk, in the same batch or a later one: the masks say so) no longer see them in
// the compact part, and they are physically removed from it: at the commit of the batch in which
// the chunk ends (visual_budget = 0), or at the end of the prompt, after the attention of the
// last prompt rows (of the last prefill batch) has picked the `visual_budget` tokens each head
// keeps of every image.
//
// The semantics equal a dense cache in which the non-CoRe heads' visual keys (sinks excepted) are
// masked with −inf for every query after the end of their image chunk.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "corehead/engine.h"
#include "ggml.h"
#include "heads/sparse_policy.h"
#include "runtime/kv_cache.h"
#include "text/hparams.h"

namespace corehead {

// Where the visual tokens of a prompt are (cache positions), and which image each belongs to.
struct SparsePlan {
    struct Span {
        int64_t start = 0, n = 0;
        int image = 0;  // visual_budget tokens are picked per image
        // Spans of one chunk that touch form one run, which the other heads stop seeing once it
        // is over: an image (all its tiles), or one frame / temporal patch of a video.
        int chunk = 0;
    };
    int64_t n_prompt = 0;
    std::vector<Span> spans;  // ascending, non-overlapping
    // The largest prefill batch. Batches run n_batch rows whatever chunks they cross (a chunk's
    // tokens leave the compact part at the commit of the batch in which it ends), so the compact
    // part needs up to n_batch slots beyond the live ones.
    int64_t n_batch = 0;
};

class SparseKVCache {
public:
    static constexpr int32_t kForever = std::numeric_limits<int32_t>::max();

    struct Layer {
        std::vector<int32_t> core, other;      // KV head ids of each group, ascending
        std::vector<int32_t> q_core, q_other;  // query heads of each group, in KV-head order
        std::vector<int32_t> q_inv;            // for each query head: its row in concat(core, other)
        ggml_tensor *kf = nullptr, *vf = nullptr;  // [hd, n_ctx, |core|]
        ggml_tensor *kc = nullptr, *vc = nullptr;  // [hd, capacity, |other|]
    };

    SparseKVCache(const TextHParams& hp, SparseConfig cfg, int64_t n_ctx, ggml_type type, ggml_backend_t backend);
    SparseKVCache(const SparseKVCache&) = delete;
    SparseKVCache& operator=(const SparseKVCache&) = delete;

    const SparseConfig& config() const { return cfg_; }
    // Layer l's groups and parts: those of the layer whose K/V it reads (hp.kv_layer(l)).
    const Layer& layer(int64_t l) const { return layers_[hp_.kv_layer(l)]; }
    // False when every KV head is CoRe (nothing is ever dropped: the cache acts as a dense one).
    bool has_other_heads() const {
        for (const Layer& L : layers_) {
            if (!L.other.empty()) return true;
        }
        return false;
    }
    int64_t n_ctx() const { return n_ctx_; }
    ggml_type type() const { return type_; }

    // Starts a new sequence; `plan` (may be null: text only) says where its visual tokens are.
    // Sizes the compact part for it. Throws InputError when a budget exceeds an image.
    void reset(const SparsePlan* plan);
    // Compact slots in use before the next batch.
    int64_t n_compact() const { return static_cast<int64_t>(pos_.size()); }
    int64_t compact_capacity() const { return cap_c_; }
    // True when the batch [p0, p0 + n) must return SnapKV scores (see commit).
    bool wants_scores(int64_t p0, int64_t n) const;

    // Cache position of compact slot j for layer l / other-group head h (j < n_compact(); l < 0:
    // the position shared by all heads, used for causal masks), and the first query position that
    // no longer sees it.
    int32_t slot_pos(int64_t l, int64_t h, int64_t j) const;
    int32_t slot_until(int64_t j) const { return until_[j]; }
    // Whether compact masks must differ per head in layer l (budget tokens in sliding-window layers).
    bool per_head_positions(int64_t l) const;
    // The first query position that no longer sees the (non-CoRe) key at cache position `pos`.
    int32_t until_of(int64_t pos) const;

    // After the batch [p0, p0 + n) was computed: records its slots, then drops the visual tokens
    // that no later query of the compact heads sees. `scores` ([n_layer][h * n_kv_c + j], empty for
    // layers without other heads) when wants_scores() was true.
    void commit(int64_t p0, int64_t n, const std::vector<std::vector<float>>& scores);

    KVStats stats(int64_t n_past) const;

private:
    void allocate_compact(int64_t capacity);
    // K/V tensors of `slots` slots for every layer's CoRe (core) or other group, in one buffer.
    BackendTensors allocate_part(bool core, int64_t slots, const std::string& what);
    // Keeps, per layer and other-group head, the old slots `src[h][new]` (ascending) and moves rows.
    void compact(const std::vector<std::vector<std::vector<int32_t>>>& src, int64_t n_new);
    size_t row_bytes(int64_t l) const;  // K + V bytes of one token of one head

    TextHParams hp_;
    SparseConfig cfg_;
    int64_t n_ctx_;
    ggml_type type_;
    ggml_backend_t backend_;
    std::vector<Layer> layers_;
    BackendTensors full_, compact_;
    int64_t cap_c_ = 0;
    bool compact_ready_ = false;

    // Current sequence.
    SparsePlan plan_;
    bool has_plan_ = false;
    std::vector<int32_t> tok_until_, tok_image_;  // per prompt position (see reset)
    std::vector<int32_t> pos_;    // compact slot -> cache position (shared by all heads)
    std::vector<int32_t> until_;  // compact slot -> first query position that does not see it
    std::vector<int32_t> image_;  // compact slot -> image of a pending visual token, else -1
    // After a budget selection, per layer and other-group head: cache positions of the slots.
    std::vector<std::vector<std::vector<int32_t>>> head_pos_;
    bool selected_ = false;
};

}  // namespace corehead
