// Head interventions (docs/architecture.md §5), applied per (layer, head) inside the decoder graph without
// touching the weights:
//   zero      the head's output (before the output projection) is multiplied by 0;
//   mean      the head's output is replaced by a fixed vector (its mean over reference inputs);
//   knockout  the head may not attend along a set of (query, key) edges: −inf at those entries of
//             its attention mask, for the main path and the taps alike. The edges are the
//             visual tokens of a multimodal prompt for the queries after their image (the
//             default) or for every query, or explicit keys with per-key query ranges.
// A layer without interventions gets exactly the graph it would have without them, so clearing
// all interventions restores bit-identical outputs.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "corehead/engine.h"
#include "text/hparams.h"

namespace corehead {

struct HeadInterventions {
    struct Layer {
        std::vector<float> gate;      // [n_head] multiplier of each head's output (empty = all 1)
        std::vector<float> bias;      // [n_head * head_dim] added after the gate (empty = none)
        std::vector<uint8_t> knockout;  // [n_head] 1 = may not attend to knockout_keys (empty = none)
        // Gated DeltaNet layers only: [value heads] multiplier of each value head's gated RMSNorm
        // output, in the file's (tiled) value-head order (empty = none). Set by the DeltaNet
        // ablation, not by compile_interventions (Engine keeps the two apart).
        std::vector<float> value_gate;
    };
    std::vector<Layer> layers;  // empty = no interventions at all
    // What was asked for: explicit keys (cache indices, ascending; a key may repeat, once per query
    // range) with optional parallel query ranges [from, until); and, for multimodal prompts without
    // explicit ranges, which queries lose the visual keys: "after" (those after the image, outside
    // any image) or "all".
    std::vector<int32_t> user_keys, user_from, user_until;
    bool all_queries = false;
    // The edges in force for the current context (set by activate_knockout at every prompt):
    // key knockout_keys[i] is knocked out for queries at cache indices in
    // [knockout_from[i], knockout_until[i]) (ranges empty = every query). Ascending keys.
    std::vector<int32_t> knockout_keys;
    std::vector<int32_t> knockout_from, knockout_until;

    bool gates(int64_t l) const { return l < (int64_t)layers.size() && !layers[l].gate.empty(); }
    bool knocks(int64_t l) const { return l < (int64_t)layers.size() && !layers[l].knockout.empty(); }
    bool value_gates(int64_t l) const { return l < (int64_t)layers.size() && !layers[l].value_gate.empty(); }
    bool any_knockout() const {
        for (const Layer& L : layers) {
            if (!L.knockout.empty()) return true;
        }
        return false;
    }
};

// Sums of each head's output over the tokens of a batch, per layer: [n_layer][n_head * head_dim],
// and the token count — for mean ablation's reference means.
struct HeadOutputSums {
    std::vector<std::vector<double>> sums;
    int64_t n_tokens = 0;
};

// The user's list compiled per layer (validated: layers and heads in range, each listed once,
// known kinds, mean sizes; knockout keys in the context, with per-key query ranges that are
// either absent or one per key). Keys come out ascending with their ranges.
// `queries`: "after" or "all" (see user_keys).
HeadInterventions compile_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                        const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until,
                                        const std::string& queries, const TextHParams& hp, int64_t n_ctx);

// Zero-ablation of Gated DeltaNet value heads: (layer, value head) pairs, the value head numbered
// as transformers does (value head v reads key head v / (value heads / key heads)), validated
// (recurrent layers of a hybrid model, heads in range, each listed once) and compiled to
// [n_layer] gates (empty for untouched layers) in the file's order: the converter tiles the value
// heads (file head r * key heads + k is transformers' head k * (value heads / key heads) + r).
std::vector<std::vector<float>> compile_deltanet_ablation(const std::vector<std::pair<int32_t, int32_t>>& value_heads,
                                                          const TextHParams& hp);
// Installs `gates` (from compile_deltanet_ablation) as iv's value gates, replacing any there.
void set_value_gates(HeadInterventions& iv, const std::vector<std::vector<float>>& gates);

// At the start of every prompt (and for the tokens generated after it): the knockout edges of
// this context. Explicit ranges always apply as given. Otherwise a multimodal prompt (`images`:
// the cache indices of each image's visual tokens, one list per image) knocks out its visual
// tokens — for every query ("all"), or for the queries after each image that lie outside every
// image's span ("after": image -> image attention and the text before the image untouched); a
// text prompt (no images) knocks out the explicit keys for every query.
void activate_knockout(HeadInterventions& iv, const std::vector<std::vector<int32_t>>& images);

}  // namespace corehead
