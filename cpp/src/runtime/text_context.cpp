#include "runtime/text_context.h"

#include <string>

#include "corehead/error.h"
#include "ggml-backend.h"
#include "runtime/backend.h"
#include "runtime/graph_runner.h"
#include "runtime/kv_cache.h"
#include "text/family.h"

namespace corehead {

namespace {
constexpr size_t kGraphSize = 8192;
}

TextContext::TextContext(const TextFamily& family, const TextHParams& hp, const TextWeights& w, const Backends& b,
                         int64_t n_ctx, ggml_type kv_type)
    : family_(family), hp_(hp), w_(w) {
    kv_ = std::make_unique<KVCache>(hp.n_layer, n_ctx, hp.n_head_kv, hp.head_dim_k, hp.head_dim_v, kv_type, b.main);
    runner_ = std::make_unique<GraphRunner>(b, kGraphSize);
}

TextContext::~TextContext() = default;

int64_t TextContext::n_ctx() const { return kv_->n_ctx(); }
size_t TextContext::kv_bytes() const { return kv_->nbytes(); }

void TextContext::truncate(int64_t n) {
    if (n < 0 || n > n_past_) throw InputError("truncate position out of range");
    n_past_ = n;
}

std::vector<float> TextContext::decode(DecoderBatch& batch) {
    if (batch.n_tokens <= 0) throw InputError("empty batch");
    if (n_past_ + batch.n_tokens > kv_->n_ctx()) {
        throw ContextOverflow("the input needs " + std::to_string(n_past_ + batch.n_tokens) + " tokens but the context holds " +
                              std::to_string(kv_->n_ctx()) + "; create the Engine with a larger n_ctx or shorten the input");
    }
    batch.n_past = n_past_;
    if (!batch.interventions) batch.interventions = interventions_;
    if (batch.positions.empty()) {
        const int64_t per = family_.uses_mrope() ? 4 : 1;
        batch.positions.resize(per * batch.n_tokens);
        for (int64_t s = 0; s < per; ++s) {
            for (int64_t i = 0; i < batch.n_tokens; ++i) {
                batch.positions[s * batch.n_tokens + i] = static_cast<int32_t>(s < 3 ? n_past_ + i + pos_offset_ : 0);
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

    GraphRunner::Graph graph = runner_->new_graph();
    DecoderGraph g(graph.ctx.get(), graph.gf, hp_, w_, *kv_, batch);
    ggml_tensor* logits = family_.build(g);
    ggml_set_output(logits);
    ggml_build_forward_expand(graph.gf, logits);
    runner_->compute(graph.gf, [&g] { g.set_inputs(); },
                     "a batch of " + std::to_string(batch.n_tokens) + " tokens");
    std::vector<float> out = read_f32(logits);
    g.read_outputs();
    n_past_ += batch.n_tokens;
    return out;
}

}  // namespace corehead
