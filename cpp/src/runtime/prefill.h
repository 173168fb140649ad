// Feeding an input to a TextContext in batches, for text and multimodal prompts alike: token
// runs and image-embedding runs, the rows whose logits come back, attention taps cut per batch,
// per-head output sums, and an interrupt check between forward passes.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "heads/interventions.h"
#include "heads/taps.h"
#include "text/graph.h"

namespace corehead {

class TextContext;

using ProgressCallback = std::function<void(const char* phase, int64_t done, int64_t total)>;

// Throws ContextOverflow (the one message for an input longer than the context).
void check_context_fits(int64_t n_needed, int64_t n_ctx);

struct PrefillOptions {
    int64_t n_batch = 512;
    bool all_positions = false;  // logits of every position ([n, n_vocab]) or of the last one
    // Instead: the logits of these input positions only (ascending, distinct, in [0, n)), so a
    // caller that needs a few rows does not copy out every row.
    std::vector<int32_t> rows;
    // Attention taps on absolute input positions; each batch's result goes to on_taps(index in
    // taps->rows of the batch's first tapped row, result).
    const TapRequest* taps = nullptr;
    std::function<void(size_t, const TapResult&)> on_taps;
    HeadOutputSums* head_sums = nullptr;  // per-head output sums over every position
    std::function<void()> interrupt;      // runs before each forward pass; may throw
    // Reports work done so far: ("encode", images encoded, images) and ("prefill", input
    // positions fed, positions), after each vision pass / forward pass; may throw like interrupt.
    ProgressCallback progress;
    // M-RoPE positions of the whole input (4 * n, section-major); empty: the context's default.
    const std::vector<int32_t>* positions = nullptr;
};

class Prefill {
public:
    // Checks up front that all `n` positions fit after the context's current ones (and `rows`).
    Prefill(TextContext& ctx, const PrefillOptions& o, int64_t n);

    // Tokens [at, at + count) of the input, in n_batch chunks.
    void tokens(const int32_t* ids, int64_t at, int64_t count);
    // One batch of input embeddings at input position `at` (row-major [len, n_embd]) and, for
    // DeepStack models, their DeepStack features ([n_deepstack][len][n_embd]).
    void embeddings(std::vector<float> embd, int64_t at, int64_t len, bool bidirectional,
                    std::vector<float> deepstack = {});
    // One batch of text and visual rows together (rows [at, at + len)): is_token[i] = 1 takes
    // ids[i], 0 takes row i of `embd` (zeros at token rows; DeepStack likewise). Fewer, fuller
    // forward passes than one per run where text and images alternate (Pixtral's row breaks).
    void mixed(std::vector<int32_t> ids, std::vector<float> embd, std::vector<float> is_token, int64_t at,
               int64_t len, std::vector<float> deepstack = {});
    // The logits collected (every position, the requested rows, or the last batch's last row).
    std::vector<float> take() { return std::move(out_); }

private:
    void run(DecoderBatch& b, int64_t at);
    TextContext& ctx_;
    const PrefillOptions& o_;
    const int64_t n_;
    std::vector<float> out_;
};

}  // namespace corehead
