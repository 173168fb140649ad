// Head interventions (docs/architecture.md §5), applied per (layer, head) inside the decoder graph without
// touching the weights:
//   zero      the head's output (before the output projection) is multiplied by 0;
//   mean      the head's output is replaced by a fixed vector (its mean over reference inputs);
//   knockout  the head may not attend to a set of key positions (the visual tokens): −inf on
//             those keys in its attention mask, for the main path and the taps alike.
// A layer without interventions gets exactly the graph it would have without them, so clearing
// all interventions restores bit-identical outputs.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "corehead/engine.h"
#include "text/hparams.h"

namespace corehead {

struct HeadInterventions {
    struct Layer {
        std::vector<float> gate;      // [n_head] multiplier of each head's output (empty = all 1)
        std::vector<float> bias;      // [n_head * head_dim] added after the gate (empty = none)
        std::vector<uint8_t> knockout;  // [n_head] 1 = may not attend to knockout_keys (empty = none)
    };
    std::vector<Layer> layers;           // empty = no interventions at all
    std::vector<int32_t> knockout_keys;  // context positions (cache indices), ascending
    // Optional, parallel to knockout_keys: key i is knocked out only for queries at cache indices
    // in [knockout_from[i], knockout_until[i]) (empty = every query). Multimodal calls then keep
    // these explicit keys.
    std::vector<int32_t> knockout_from, knockout_until;

    bool gates(int64_t l) const { return l < (int64_t)layers.size() && !layers[l].gate.empty(); }
    bool knocks(int64_t l) const { return l < (int64_t)layers.size() && !layers[l].knockout.empty(); }
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
HeadInterventions compile_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                        const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until,
                                        const TextHParams& hp, int64_t n_ctx);

// For the duration of a multimodal call, knocked-out heads may not attend to its visual tokens:
// the knockout keys become `keys` (the call's visual positions) and come back afterwards. Keys
// given with per-key query ranges (knockout_from) stay as they are.
class ScopedKnockoutKeys {
public:
    ScopedKnockoutKeys(HeadInterventions& iv, std::vector<int32_t> keys);
    ~ScopedKnockoutKeys();
    ScopedKnockoutKeys(const ScopedKnockoutKeys&) = delete;
    ScopedKnockoutKeys& operator=(const ScopedKnockoutKeys&) = delete;

private:
    HeadInterventions& iv_;
    std::vector<int32_t> saved_;
    const bool replace_;
};

}  // namespace corehead
