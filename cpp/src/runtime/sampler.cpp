#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <unordered_set>

#include "corehead/error.h"

namespace corehead {

void validate(const SamplingParams& p) {
    if (!(p.temperature >= 0.0f) || !std::isfinite(p.temperature)) throw InputError("temperature must be >= 0");
    if (p.top_k < 0) throw InputError("top_k must be >= 0 (0 disables it)");
    if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) throw InputError("top_p must be in (0, 1]");
    if (!(p.min_p >= 0.0f && p.min_p < 1.0f)) throw InputError("min_p must be in [0, 1)");
    if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) throw InputError("repeat_penalty must be > 0");
    if (p.repeat_last_n < 0) throw InputError("repeat_last_n must be >= 0");
}

Sampler::Sampler(const SamplingParams& p) : p_(p), rng_(p.seed) { validate(p); }

int32_t Sampler::sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history) {
    work_.assign(logits, logits + n_vocab);
    if (p_.repeat_penalty != 1.0f && p_.repeat_last_n > 0) {
        const size_t n = std::min<size_t>(history.size(), static_cast<size_t>(p_.repeat_last_n));
        std::unordered_set<int32_t> seen(history.end() - n, history.end());
        for (int32_t t : seen) {
            if (t < 0 || t >= n_vocab) continue;
            float& l = work_[t];
            l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
        }
    }
    if (p_.temperature <= 0.0f) {
        return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
    }
    // Candidates sorted by logit, truncated by top-k.
    idx_.resize(n_vocab);
    std::iota(idx_.begin(), idx_.end(), 0);
    int64_t n_keep = n_vocab;
    if (p_.top_k > 0 && p_.top_k < n_vocab) n_keep = p_.top_k;
    std::partial_sort(idx_.begin(), idx_.begin() + n_keep, idx_.end(),
                      [&](int32_t a, int32_t b) { return work_[a] > work_[b]; });
    idx_.resize(n_keep);
    // Softmax over the kept candidates (at temperature 1 for the top-p/min-p cuts).
    const float max_l = work_[idx_[0]];
    std::vector<double> prob(n_keep);
    double sum = 0;
    for (int64_t i = 0; i < n_keep; ++i) sum += (prob[i] = std::exp(double(work_[idx_[i]]) - max_l));
    for (auto& x : prob) x /= sum;
    if (p_.top_p < 1.0f) {
        double cum = 0;
        int64_t cut = n_keep;
        for (int64_t i = 0; i < n_keep; ++i) {
            cum += prob[i];
            if (cum >= p_.top_p) { cut = i + 1; break; }
        }
        n_keep = cut;
    }
    if (p_.min_p > 0.0f) {
        const double floor = prob[0] * p_.min_p;
        int64_t cut = 1;
        while (cut < n_keep && prob[cut] >= floor) ++cut;
        n_keep = cut;
    }
    // Temperature applies to the survivors; then draw.
    std::vector<double> w(n_keep);
    for (int64_t i = 0; i < n_keep; ++i) w[i] = std::exp((double(work_[idx_[i]]) - max_l) / p_.temperature);
    std::discrete_distribution<int64_t> dist(w.begin(), w.end());
    return idx_[dist(rng_)];
}

}  // namespace corehead
