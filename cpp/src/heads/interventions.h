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
#include <vector>

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
};

// Sums of each head's output over the tokens of a batch, per layer: [n_layer][n_head * head_dim],
// and the token count — for mean ablation's reference means.
struct HeadOutputSums {
    std::vector<std::vector<double>> sums;
    int64_t n_tokens = 0;
};

}  // namespace corehead
