#include "runtime/prefill.h"

#include <algorithm>
#include <string>

#include "corehead/error.h"
#include "runtime/text_context.h"

namespace corehead {

void check_context_fits(int64_t n_needed, int64_t n_ctx) {
    if (n_needed <= n_ctx) return;
    throw ContextOverflow("the input needs " + std::to_string(n_needed) + " tokens but the context holds " +
                          std::to_string(n_ctx) + "; create the Engine with a larger n_ctx or shorten the input");
}

Prefill::Prefill(TextContext& ctx, const PrefillOptions& o, int64_t n) : ctx_(ctx), o_(o), n_(n) {
    if (n <= 0) throw InputError("the prompt is empty (no tokens)");
    check_context_fits(ctx.n_past() + n, ctx.n_ctx());
    for (size_t i = 0; i < o.rows.size(); ++i) {
        if (o.rows[i] < 0 || o.rows[i] >= n || (i > 0 && o.rows[i] <= o.rows[i - 1])) {
            throw InputError("logit rows must be distinct positions of the input in ascending order, within [0, " +
                             std::to_string(n) + ")");
        }
    }
}

void Prefill::tokens(const int32_t* ids, int64_t at, int64_t count) {
    const int64_t step = std::max<int64_t>(1, o_.n_batch);
    for (int64_t k = 0; k < count; k += step) {
        const int64_t len = std::min(step, count - k);
        DecoderBatch b;
        b.tokens.assign(ids + at + k, ids + at + k + len);
        b.n_tokens = len;
        run(b, at + k);
    }
}

void Prefill::embeddings(std::vector<float> embd, int64_t at, int64_t len, bool bidirectional,
                         std::vector<float> deepstack) {
    DecoderBatch b;
    b.embeddings = std::move(embd);
    b.deepstack = std::move(deepstack);
    b.n_tokens = len;
    b.bidirectional = bidirectional;
    run(b, at);
}

void Prefill::mixed(std::vector<int32_t> ids, std::vector<float> embd, std::vector<float> is_token, int64_t at,
                    int64_t len, std::vector<float> deepstack) {
    DecoderBatch b;
    b.tokens = std::move(ids);
    b.embeddings = std::move(embd);
    b.is_token = std::move(is_token);
    b.deepstack = std::move(deepstack);
    b.n_tokens = len;
    run(b, at);
}

void Prefill::run(DecoderBatch& b, int64_t at) {
    if (o_.interrupt) o_.interrupt();
    if (o_.positions && !o_.positions->empty()) {
        b.positions.resize(static_cast<size_t>(4 * b.n_tokens));
        for (int sec = 0; sec < 4; ++sec) {
            std::copy_n(o_.positions->begin() + sec * n_ + at, b.n_tokens, b.positions.begin() + sec * b.n_tokens);
        }
    }
    size_t kept = 0;  // requested rows in this batch
    if (!o_.rows.empty()) {
        const auto lo = std::lower_bound(o_.rows.begin(), o_.rows.end(), at);
        const auto hi = std::lower_bound(lo, o_.rows.end(), at + b.n_tokens);
        for (auto it = lo; it != hi; ++it) b.output_rows.push_back(static_cast<int32_t>(*it - at));
        kept = static_cast<size_t>(hi - lo);
        if (kept == 0) b.output_rows.push_back(static_cast<int32_t>(b.n_tokens - 1));  // a batch needs one row
    } else if (o_.all_positions) {
        for (int64_t i = 0; i < b.n_tokens; ++i) b.output_rows.push_back(static_cast<int32_t>(i));
    } else {
        b.output_rows.push_back(static_cast<int32_t>(b.n_tokens - 1));
    }
    b.head_sums = o_.head_sums;
    ChunkTaps chunk;
    TapResult chunk_result;
    if (o_.taps && (chunk = chunk_taps(*o_.taps, ctx_.n_past(), b.n_tokens)).any()) {
        b.taps = &chunk.request;
        b.tap_result = &chunk_result;
    }
    std::vector<float> l = ctx_.decode(b);
    if (b.tap_result && o_.on_taps) o_.on_taps(chunk.first, chunk_result);
    if (o_.progress) o_.progress("prefill", at + b.n_tokens, n_);
    if (!o_.rows.empty()) {
        if (kept) out_.insert(out_.end(), l.begin(), l.end());
    } else if (o_.all_positions) {
        out_.insert(out_.end(), l.begin(), l.end());
    } else if (at + b.n_tokens == n_) {
        out_ = std::move(l);
    }
}

}  // namespace corehead
