// Token sampling: repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw.
// temperature <= 0 is greedy (argmax after the penalty), as in llama.cpp and transformers.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace corehead {

struct SamplingParams {
    float temperature = 0.0f;
    int32_t top_k = 0;            // 0 = off
    float top_p = 1.0f;           // 1 = off
    float min_p = 0.0f;           // 0 = off
    float repeat_penalty = 1.0f;  // 1 = off (CTRL-style: divide positive logits, multiply negative)
    int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at
    uint64_t seed = 0;
};

// Throws InputError for out-of-range parameters.
void validate(const SamplingParams& p);

class Sampler {
public:
    explicit Sampler(const SamplingParams& p);
    // `history`: the tokens so far (prompt + generated), for the repetition penalty.
    int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);

private:
    SamplingParams p_;
    std::mt19937_64 rng_;
    std::vector<float> work_;
    std::vector<int32_t> idx_;
};

}  // namespace corehead
