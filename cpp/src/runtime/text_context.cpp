#include "runtime/text_context.h"

#include <string>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"
#include "runtime/graph_runner.h"
#include "runtime/kv_cache.h"
#include "runtime/prefill.h"
#include "runtime/recurrent_state.h"
#include "text/family.h"

namespace corehead {

namespace {
constexpr size_t kGraphSize = 8192;
}

TextContext::TextContext(const TextFamily& family, const TextHParams& hp, const TextWeights& w, const Backends& b,
                         int64_t n_ctx, ggml_type kv_type, const SparseConfig* sparse)
    : family_(family), hp_(hp), w_(w), n_ctx_(n_ctx), kv_type_(kv_type), backends_(b) {
    if (hp.has_recurrent()) rs_ = std::make_unique<RecurrentState>(hp, b.main);
    set_sparse(sparse);
    runner_ = std::make_unique<GraphRunner>(b, kGraphSize, "text");
}

TextContext::~TextContext() = default;

int64_t TextContext::n_ctx() const { return n_ctx_; }

void TextContext::reset() {
    n_past_ = 0;
    pos_offset_ = 0;
    fresh_ = true;
    if (rs_) rs_->clear();  // a new sequence starts from the zero state
}

size_t TextContext::kv_bytes() const {
    if (kv_) return kv_->nbytes();  // the recurrent state is TextInfo::recurrent_state_bytes
    const KVStats s = kv_stats();
    return s.full_allocated + s.compact_allocated;
}

void TextContext::set_sparse(const SparseConfig* cfg) {
    reset();
    kv_.reset();
    skv_.reset();
    auto dense = [this] {
        kv_ = std::make_unique<KVCache>(hp_, n_ctx_, kv_type_, backends_.main);
    };
    if (!cfg) return dense();
    try {
        skv_ = std::make_unique<SparseKVCache>(hp_, *cfg, n_ctx_, kv_type_, backends_.main);
    } catch (...) {
        dense();  // stay usable
        throw;
    }
}

void TextContext::set_plan(const SparsePlan& plan) {
    if (!skv_) return;
    if (n_past_ != 0) throw InputError("internal: a sparse plan must be set right after reset()");
    skv_->reset(&plan);
    fresh_ = false;
}

KVStats TextContext::kv_stats() const {
    if (!kv_) return skv_->stats(n_past_);
    // A layer that reads another layer's K/V (KV sharing) holds none: it counts 0 KV heads, so
    // every KV set is counted once, at the layer that writes it.
    KVStats s;
    s.n_tokens = n_past_;
    for (int64_t l = 0; l < hp_.n_layer; ++l) {
        // Hybrid models' recurrent layers and gemma4's KV-sharing layers hold no K/V of their own.
        const int64_t heads = hp_.owns_kv(l) && !hp_.is_recurrent(l) ? hp_.n_head_kv : 0;
        const size_t row = ggml_row_size(kv_->type(), hp_.head_k(l)) + ggml_row_size(kv_->type(), hp_.head_v(l));
        s.full_bytes += static_cast<size_t>(heads * n_past_) * row;
        s.core_kv_heads.push_back(heads);
        s.other_kv_heads.push_back(0);
    }
    s.full_allocated = kv_->nbytes();
    return s;
}

void TextContext::truncate(int64_t n) {
    if (n < 0 || n > n_past_) throw InputError("truncate position out of range");
    if (skv_ && n != n_past_) throw InputError("the CoRe-sparse cache cannot be truncated (dropped tokens are gone)");
    if (rs_ && n != n_past_) {
        throw InputError("cannot truncate to position " + std::to_string(n) + " of " + std::to_string(n_past_) +
                         ": this " + hp_.arch + " model's Gated DeltaNet layers keep a recurrent state that cannot be "
                         "rewound; run the prompt up to position " + std::to_string(n) + " again instead");
    }
    n_past_ = n;
}

std::vector<float> TextContext::decode(DecoderBatch& batch) {
    if (batch.n_tokens <= 0) throw InputError("empty batch");
    check_context_fits(n_past_ + batch.n_tokens, n_ctx_);
    batch.n_past = n_past_;
    if (!batch.interventions) batch.interventions = interventions_;
    const bool branched = !batch.branch_first.empty();
    if (branched) {
        if (skv_) throw_needs_dense_cache("branch batches");
        if (rs_) throw InputError("internal: branch batches on a model with recurrent layers");
        if (static_cast<int64_t>(batch.branch_first.size()) != batch.n_tokens ||
            static_cast<int64_t>(batch.branch_prefix.size()) != batch.n_tokens) {
            throw InputError("internal: branch rows do not match the batch");
        }
    }
    if (batch.positions.empty()) {
        const int64_t per = family_.positions() == RopePositions::mrope ? 4 : 1;
        batch.positions.resize(per * batch.n_tokens);
        for (int64_t s = 0; s < per; ++s) {
            for (int64_t i = 0; i < batch.n_tokens; ++i) {
                // A branch row sits where it would in a sequential run of its branch.
                const int64_t at = branched ? batch.branch_prefix[i] + i - batch.branch_first[i] : n_past_ + i;
                batch.positions[s * batch.n_tokens + i] = static_cast<int32_t>(s < 3 ? at + pos_offset_ : 0);
            }
        }
    }
    for (int32_t r : batch.output_rows) {
        if (r < 0 || r >= batch.n_tokens) throw InputError("output row out of range");
    }
    if (batch.output_rows.empty()) throw InputError("no output rows requested");
    for (int32_t t : batch.tokens) {
        if (t < 0 || t >= hp_.n_vocab) {
            throw InputError("token id " + std::to_string(t) + " is out of range [0, " + std::to_string(hp_.n_vocab) + ")");
        }
    }

    std::vector<std::vector<float>> scores;
    if (skv_) {
        if (batch.taps) throw_needs_dense_cache("attention taps");
        if (batch.interventions && batch.interventions->any_knockout()) throw_needs_dense_cache("knockout interventions");
        if (fresh_ && n_past_ == 0) skv_->reset(nullptr);  // a prompt without a plan (text only)
        if (skv_->n_compact() + batch.n_tokens > skv_->compact_capacity()) {
            throw ContextOverflow("the compact part of the CoRe-sparse KV cache holds " +
                                  std::to_string(skv_->compact_capacity()) + " tokens; create the Engine with a larger n_ctx");
        }
        if (skv_->wants_scores(n_past_, batch.n_tokens)) batch.sparse_scores = &scores;
    }
    fresh_ = false;

    GraphRunner::Graph graph = runner_->new_graph();
    DecoderGraph g(graph.ctx.get(), graph.gf, hp_, w_, kv_.get(), skv_.get(), batch, rs_.get());
    ggml_tensor* logits = family_.build(g);
    ggml_set_output(logits);
    ggml_build_forward_expand(graph.gf, logits);
    // Knockout masks move between layers from one intervention to the next: re-plan the buffers
    // for such graphs and for the first graph after them (see GraphRunner::compute).
    const bool knocks = batch.interventions && batch.interventions->any_knockout();
    runner_->compute(graph.gf, [&g] { g.set_inputs(); },
                     "a batch of " + std::to_string(batch.n_tokens) + " tokens", knocks || last_knocked_);
    last_knocked_ = knocks;
    std::vector<float> out = read_f32(logits);
    g.read_outputs();
    if (skv_) {
        skv_->commit(n_past_, batch.n_tokens, scores);
        batch.sparse_scores = nullptr;
    }
    n_past_ += batch.n_tokens;
    return out;
}

}  // namespace corehead
