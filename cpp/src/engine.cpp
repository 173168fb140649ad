// Engine: owns the backends, the validated model files and their weights.
#include "corehead/engine.h"

#include <algorithm>

#include "ggml.h"
#include "gguf/gguf_file.h"
#include "runtime/backend.h"
#include "runtime/multimodal.h"
#include "runtime/sampler.h"
#include "heads/interventions.h"
#include "heads/taps.h"
#include "runtime/text_context.h"
#include "text/text_weights.h"
#include "tokenizer/vocab.h"
#include "runtime/weights.h"
#include "text/text_model.h"
#include "vision/vision_model.h"

namespace corehead {

namespace {

TextInfo make_text_info(const TextModelFile& m) {
    TextInfo i;
    const GgufFile& f = *m.file;
    i.path = f.path();
    i.arch = m.hp.arch;
    i.name = m.name;
    i.file_type = m.file_type >= 0 ? file_type_name(m.file_type) : "unknown";
    i.n_layer = m.hp.n_layer;
    i.n_head = m.hp.n_head;
    i.n_head_kv = m.hp.n_head_kv;
    i.n_embd = m.hp.n_embd;
    i.n_ff = m.hp.n_ff;
    i.n_vocab = m.hp.n_vocab;
    i.n_ctx_train = m.hp.n_ctx_train;
    i.head_dim = m.hp.head_dim_k;
    i.n_tensors = f.n_tensors();
    for (const auto& name : f.tensor_names()) i.n_params += ggml_nelements(f.find_tensor(name));
    i.file_size = f.file_size();
    i.vocab_only = m.vocab_only;
    i.tokenizer = m.tokenizer_model;
    i.tokenizer_pre = m.tokenizer_pre;
    i.n_tokens = m.n_tokens;
    return i;
}

VisionInfo make_vision_info(const VisionModelFile& m) {
    VisionInfo i;
    const GgufFile& f = *m.file;
    i.path = f.path();
    i.projector = m.hp.projector;
    i.name = m.name;
    i.file_type = m.file_type >= 0 ? file_type_name(m.file_type) : "unknown";
    i.image_size = m.hp.image_size;
    i.patch_size = m.hp.patch_size;
    i.n_embd = m.hp.n_embd;
    i.n_ff = m.hp.n_ff;
    i.n_layer = m.hp.n_layer;
    i.n_head = m.hp.n_head;
    i.n_out = m.hp.n_out;
    i.n_tensors = f.n_tensors();
    for (const auto& name : f.tensor_names()) i.n_params += ggml_nelements(f.find_tensor(name));
    i.file_size = f.file_size();
    return i;
}

Sampler make_sampler(const GenerateOptions& o) {
    if (o.max_tokens < 0) throw InputError("max_tokens must be >= 0");
    SamplingParams sp;
    sp.temperature = o.temperature;
    sp.top_k = o.top_k;
    sp.top_p = o.top_p;
    sp.min_p = o.min_p;
    sp.repeat_penalty = o.repeat_penalty;
    sp.repeat_last_n = o.repeat_last_n;
    sp.seed = o.seed;
    return Sampler(sp);
}

}  // namespace

TextInfo inspect_model(const std::string& path) { return make_text_info(open_text_model(path)); }

VisionInfo inspect_mmproj(const std::string& path) { return make_vision_info(open_mmproj(path)); }

struct Engine::Impl {
    std::unique_ptr<Backends> backends;
    TextModelFile text;
    std::optional<VisionModelFile> vision;
    TextInfo text_info;
    std::optional<VisionInfo> vision_info;
    std::unique_ptr<Weights> text_weights;
    std::unique_ptr<Weights> vision_weights;
    TextWeights tw;
    std::unique_ptr<TextContext> ctx;
    int64_t n_ctx = 0;
    int64_t n_batch = 512;
    std::vector<int32_t> eog;
    std::optional<Tokenizer> tokenizer;
    std::function<void()> interrupt_check;
    HeadInterventions interventions;

    // Runs a prefill with the given taps (text or multimodal).
    using TapRunner = std::function<void(const TapRequest&, const std::function<void(size_t, const TapResult&)>&)>;
    AttentionTaps attention(int64_t n, const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                            bool full_rows, const std::vector<float>& relevance, int64_t n_regions, const TapRunner& run);

    // For the duration of a multimodal call, knocked-out heads may not attend to its visual tokens.
    // (Explicit keys given with per-key query thresholds, knockout_from, stay as they are.)
    struct KnockoutKeys {
        Impl& impl;
        std::vector<int32_t> saved;
        const bool replace;
        KnockoutKeys(Impl& i, std::vector<int32_t> keys) : impl(i), replace(i.interventions.knockout_from.empty()) {
            if (!replace) return;
            saved = std::move(i.interventions.knockout_keys);
            impl.interventions.knockout_keys = std::move(keys);
        }
        ~KnockoutKeys() {
            if (replace) impl.interventions.knockout_keys = std::move(saved);
        }
    };

    // CoRe-sparse mode (docs/architecture.md §6): the options, and a fresh context for prompt `p` told where its
    // visual tokens are.
    std::optional<SparseOptions> sparse;
    SparseConfig sparse_config(const SparseOptions& o) const;
    void reset_for(const MultimodalPrompt& p) {
        ctx->reset();
        if (!sparse) return;
        SparsePlan plan;
        plan.n_prompt = static_cast<int64_t>(p.ids.size());
        for (const VisualSpan& s : p.spans) plan.spans.push_back({s.start, s.n, s.image});
        ctx->set_plan(plan);
    }

    void check_interrupt() const {
        if (interrupt_check) interrupt_check();
    }
    std::unique_ptr<MultimodalRunner> mm;  // with an mmproj

    MultimodalRunner& vision_runner() const {
        if (!mm) throw InputError("this engine has no vision projector: images need Engine(model, mmproj=...)");
        return *mm;
    }
    std::vector<PreparedImage> prepare_all(const std::vector<Image>& images) const {
        std::vector<PreparedImage> out;
        for (const Image& img : images) out.push_back(vision_runner().prepare(img));
        return out;
    }

    // Feeds tokens in n_batch chunks; returns the logits of the requested rows (all or last).
    // Samples up to o.max_tokens after a prefill that produced `logits`.
    std::vector<int32_t> sample_loop(Sampler& sampler, std::vector<float> logits, std::vector<int32_t> history,
                                     const GenerateOptions& o, const TokenCallback& on_token);

    // Feeds tokens in n_batch chunks; returns the logits of the requested rows (all or last).
    // With `taps`, each chunk taps the requested positions (absolute, ascending) it contains and
    // hands the chunk's result to `on_taps(first_position_index, result)`.
    // With `head_sums`, per-head output sums over every fed position are accumulated there.
    std::vector<float> feed(const std::vector<int32_t>& tokens, bool all_positions, const TapRequest* taps = nullptr,
                            const std::function<void(size_t, const TapResult&)>& on_taps = nullptr,
                            HeadOutputSums* head_sums = nullptr) {
        if (tokens.empty()) throw InputError("the prompt is empty (no tokens)");
        if (ctx->n_past() + static_cast<int64_t>(tokens.size()) > ctx->n_ctx()) {
            throw ContextOverflow("the input needs " + std::to_string(ctx->n_past() + tokens.size()) +
                                  " tokens but the context holds " + std::to_string(ctx->n_ctx()) +
                                  "; create the Engine with a larger n_ctx or shorten the input");
        }
        std::vector<float> out;
        const int64_t n = static_cast<int64_t>(tokens.size());
        for (int64_t start = 0; start < n; start += n_batch) {
            check_interrupt();
            const int64_t len = std::min(n_batch, n - start);
            DecoderBatch b;
            b.tokens.assign(tokens.begin() + start, tokens.begin() + start + len);
            b.n_tokens = len;
            if (all_positions) {
                for (int64_t i = 0; i < len; ++i) b.output_rows.push_back(static_cast<int32_t>(i));
            } else {
                b.output_rows.push_back(static_cast<int32_t>(len - 1));
            }
            b.head_sums = head_sums;
            ChunkTaps chunk;
            TapResult chunk_result;
            if (taps && (chunk = chunk_taps(*taps, ctx->n_past(), len)).any()) {
                b.taps = &chunk.request;
                b.tap_result = &chunk_result;
            }
            std::vector<float> l = ctx->decode(b);
            if (b.tap_result && on_taps) on_taps(chunk.first, chunk_result);
            if (all_positions) {
                out.insert(out.end(), l.begin(), l.end());
            } else if (start + len == n) {
                out = std::move(l);
            }
        }
        return out;
    }
};

Engine::Engine(const EngineOptions& o) : impl_(std::make_unique<Impl>()) {
    Impl& I = *impl_;
    if (o.model.empty()) throw InputError("model path is empty");
    if (o.n_ctx < 16 || o.n_ctx > (int64_t(1) << 24)) {
        throw InputError("n_ctx must be between 16 and 16777216 tokens (got " + std::to_string(o.n_ctx) + ")");
    }
    // Validate both files completely before allocating anything.
    I.text = open_text_model(o.model);
    if (I.text.vocab_only) {
        I.text.file->fail("this GGUF holds only a tokenizer (no weights); use corehead.Tokenizer(path) to tokenize with it");
    }
    I.text_info = make_text_info(I.text);
    if (!o.mmproj.empty()) {
        I.vision = open_mmproj(o.mmproj);
        if (I.vision->hp.n_out != I.text.hp.n_embd) {
            I.vision->file->fail("this mmproj projects images to " + std::to_string(I.vision->hp.n_out) +
                                 "-dimensional embeddings but the model '" + o.model + "' has n_embd = " +
                                 std::to_string(I.text.hp.n_embd) + ": it belongs to a different model");
        }
        I.vision_info = make_vision_info(*I.vision);
    }
    I.n_ctx = o.n_ctx;
    std::optional<SparseConfig> sparse_cfg;
    if (o.sparse) sparse_cfg = I.sparse_config(*o.sparse);
    I.sparse = o.sparse;
    I.backends = create_backends(o.backend, o.n_threads);
    // Every text matrix except the token embedding (read by get_rows) is only a mul_mat weight.
    I.text_weights = std::make_unique<Weights>(*I.text.file, I.backends->main,
                                               [](const std::string& name) { return name != "token_embd.weight"; });
    if (I.vision) I.vision_weights = std::make_unique<Weights>(*I.vision->file, I.backends->main);
    I.tw = resolve_text_weights(*I.text_weights, I.text.hp);
    if (!I.text.tokenizer_model.empty() && I.text.tokenizer_model != "none") {
        I.tokenizer = Tokenizer(std::shared_ptr<const Vocab>(Vocab::from_gguf(*I.text.file)));
        I.eog = I.tokenizer->eog_tokens();
    } else {
        I.eog = I.text.eog_tokens;
    }
    ggml_type kv_type;
    if (o.kv_type == "auto") {
        kv_type = I.text.file_type == 0 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    } else if (o.kv_type == "f16") {
        kv_type = GGML_TYPE_F16;
    } else if (o.kv_type == "f32") {
        kv_type = GGML_TYPE_F32;
    } else {
        throw InputError("kv_type must be 'auto', 'f16' or 'f32' (got '" + o.kv_type + "')");
    }
    if (o.n_batch < 1 || o.n_batch > 65536) throw InputError("n_batch must be between 1 and 65536");
    I.n_batch = o.n_batch;
    I.ctx = std::make_unique<TextContext>(*I.text.family, I.text.hp, I.tw, *I.backends, o.n_ctx, kv_type,
                                          sparse_cfg ? &*sparse_cfg : nullptr);
    if (I.vision) {
        I.mm = std::make_unique<MultimodalRunner>(*I.vision, *I.vision_weights, *I.backends,
                                                  I.tokenizer ? &*I.tokenizer : nullptr, I.text.hp.n_embd, I.text.hp.arch,
                                                  I.text.family->uses_mrope());
    }
}

std::vector<float> Engine::logits(const std::vector<int32_t>& tokens, bool all_positions) {
    impl_->ctx->reset();
    return impl_->feed(tokens, all_positions);
}

std::vector<int32_t> Engine::generate(const std::vector<int32_t>& prompt, const GenerateOptions& o,
                                      const TokenCallback& on_token) {
    Sampler sampler = make_sampler(o);  // validates before any compute
    Impl& I = *impl_;
    I.ctx->reset();
    return I.sample_loop(sampler, I.feed(prompt, false), prompt, o, on_token);
}

std::vector<int32_t> Engine::Impl::sample_loop(Sampler& sampler, std::vector<float> logits, std::vector<int32_t> history,
                                               const GenerateOptions& o, const TokenCallback& on_token) {
    Impl& I = *this;
    std::vector<int32_t> out;
    const int64_t n_vocab = I.text.hp.n_vocab;
    for (int64_t i = 0; i < o.max_tokens; ++i) {
        const int32_t tok = sampler.sample(logits.data(), n_vocab, history);
        out.push_back(tok);
        history.push_back(tok);
        if (on_token && !on_token(tok)) break;
        if (o.stop_at_eog && std::find(I.eog.begin(), I.eog.end(), tok) != I.eog.end()) break;
        if (i + 1 == o.max_tokens || I.ctx->n_past() >= I.ctx->n_ctx()) break;  // never past the context
        logits = I.feed({tok}, false);  // checks for an interrupt first
    }
    return out;
}

std::optional<std::string> Engine::metadata_string(const std::string& key) const {
    const GgufFile& f = *impl_->text.file;
    return f.has(key) ? f.find_str(key) : std::nullopt;
}

AttentionTaps Engine::attention(const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                                const std::vector<int32_t>& layers, bool full_rows,
                                const std::vector<float>& relevance, int64_t n_regions) {
    Impl& I = *impl_;
    return I.attention(static_cast<int64_t>(tokens.size()), positions, layers, full_rows, relevance, n_regions,
                       [&](const TapRequest& req, const std::function<void(size_t, const TapResult&)>& on_taps) {
                           I.ctx->reset();
                           I.feed(tokens, false, &req, on_taps);
                       });
}

AttentionTaps Engine::Impl::attention(int64_t n, const std::vector<int32_t>& positions_in,
                                      const std::vector<int32_t>& layers_in, bool full_rows,
                                      const std::vector<float>& relevance, int64_t n_regions, const TapRunner& run) {
    const TextHParams& hp = text.hp;
    if (n == 0) throw InputError("the prompt is empty (no tokens)");
    if (sparse) {
        throw InputError("attention taps need the dense KV cache: run them outside the CoRe-sparse mode "
                         "(leave `with eng.sparse(...)`, or build the Engine without core_heads)");
    }
    AttentionTaps out;
    // Positions: negative values count from the end; ascending, unique.
    std::vector<int32_t> pos = positions_in;
    if (pos.empty()) pos.push_back(static_cast<int32_t>(n - 1));
    for (int32_t& p : pos) {
        if (p < -n || p >= n) {
            throw InputError("position " + std::to_string(p) + " is out of range for a prompt of " + std::to_string(n) +
                             " tokens");
        }
        if (p < 0) p += static_cast<int32_t>(n);
    }
    std::sort(pos.begin(), pos.end());
    pos.erase(std::unique(pos.begin(), pos.end()), pos.end());
    TapRequest req;
    req.rows = pos;
    req.full_rows = full_rows;
    if (layers_in.empty()) {
        for (int64_t l = 0; l < hp.n_layer; ++l) out.layers.push_back(static_cast<int32_t>(l));
    } else {
        req.layers.assign(hp.n_layer, false);
        for (int32_t l : layers_in) {
            if (l < 0 || l >= hp.n_layer) {
                throw InputError("layer " + std::to_string(l) + " is out of range [0, " + std::to_string(hp.n_layer) + ")");
            }
            req.layers[l] = true;
        }
        for (int64_t l = 0; l < hp.n_layer; ++l) {
            if (req.layers[l]) out.layers.push_back(static_cast<int32_t>(l));
        }
    }
    if (n_regions < 0 || (n_regions > 0 && static_cast<int64_t>(relevance.size()) != n_regions * n)) {
        throw InputError("relevance must hold n_regions x n_tokens values");
    }
    if (n_regions == 0 && !full_rows) throw InputError("ask for full rows, masses over a relevance matrix, or both");
    req.n_regions = n_regions;
    req.relevance = relevance;
    req.n_kv_total = n;

    out.positions = pos;
    out.n_head = hp.n_head;
    out.n_kv = n;
    out.n_regions = n_regions;
    const size_t L = out.layers.size(), H = hp.n_head, P = pos.size();
    if (full_rows) out.rows.assign(L * H * P * n, 0.0f);
    if (n_regions > 0) out.masses.assign(L * H * P * n_regions, 0.0f);

    // Scatter one chunk's taps ([n_kv_chunk | n_regions, n_tap, n_head] per layer) into the output.
    auto on_taps = [&](size_t first, const TapResult& r) {
        const size_t n_tap = full_rows ? r.rows[0].size() / (H * r.n_kv) : r.masses[0].size() / (H * n_regions);
        for (size_t li = 0; li < r.layers.size(); ++li) {
            const size_t lo = std::lower_bound(out.layers.begin(), out.layers.end(), r.layers[li]) - out.layers.begin();
            for (size_t h = 0; h < H; ++h) {
                for (size_t t = 0; t < n_tap; ++t) {
                    const size_t dst = (lo * H + h) * P + first + t;
                    if (full_rows) {
                        const float* src = r.rows[li].data() + (h * n_tap + t) * r.n_kv;
                        std::copy(src, src + r.n_kv, out.rows.begin() + dst * n);  // later keys stay 0 (masked)
                    }
                    if (n_regions > 0) {
                        const float* src = r.masses[li].data() + (h * n_tap + t) * n_regions;
                        std::copy(src, src + n_regions, out.masses.begin() + dst * n_regions);
                    }
                }
            }
        }
    };
    run(req, on_taps);
    return out;
}

void Engine::set_head_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                    const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until) {
    Impl& I = *impl_;
    const TextHParams& hp = I.text.hp;
    HeadInterventions iv;
    std::vector<std::vector<int>> seen(hp.n_layer, std::vector<int>(hp.n_head, 0));
    for (const HeadIntervention& h : list) {
        if (h.layer < 0 || h.layer >= hp.n_layer) {
            throw InputError("layer " + std::to_string(h.layer) + " is out of range [0, " + std::to_string(hp.n_layer) + ")");
        }
        if (h.head < 0 || h.head >= hp.n_head) {
            throw InputError("head " + std::to_string(h.head) + " is out of range [0, " + std::to_string(hp.n_head) + ")");
        }
        if (seen[h.layer][h.head]++) {
            throw InputError("head (" + std::to_string(h.layer) + ", " + std::to_string(h.head) + ") is listed twice");
        }
        if (h.kind != "zero" && h.kind != "mean" && h.kind != "knockout") {
            throw InputError("unknown intervention '" + h.kind + "' (use 'zero', 'mean' or 'knockout')");
        }
        if (h.kind == "mean" && static_cast<int64_t>(h.mean.size()) != hp.head_dim_v) {
            throw InputError("a mean intervention needs head_dim = " + std::to_string(hp.head_dim_v) + " values");
        }
        if (iv.layers.empty()) iv.layers.resize(hp.n_layer);
        HeadInterventions::Layer& L = iv.layers[h.layer];
        if (h.kind == "knockout") {
            if (L.knockout.empty()) L.knockout.assign(hp.n_head, 0);
            L.knockout[h.head] = 1;
            continue;
        }
        if (L.gate.empty()) L.gate.assign(hp.n_head, 1.0f);
        L.gate[h.head] = 0.0f;
        if (h.kind == "mean") {
            if (L.bias.empty()) L.bias.assign(hp.n_head * hp.head_dim_v, 0.0f);
            std::copy(h.mean.begin(), h.mean.end(), L.bias.begin() + h.head * hp.head_dim_v);
        }
    }
    for (int32_t k : keys) {
        if (k < 0 || k >= I.ctx->n_ctx()) throw InputError("knockout key position " + std::to_string(k) + " is out of range");
    }
    if (keys_from.size() != keys_until.size() || (!keys_from.empty() && keys_from.size() != keys.size())) {
        throw InputError("knockout_from and knockout_until must both hold one query position per knockout key");
    }
    bool knocks = false;
    for (const HeadIntervention& h : list) knocks = knocks || h.kind == "knockout";
    if (knocks && I.sparse) throw InputError("knockout interventions need the dense KV cache: leave the CoRe-sparse mode first");
    // Keys ascending (with their thresholds).
    std::vector<size_t> order(keys.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&keys](size_t a, size_t b) { return keys[a] < keys[b]; });
    for (size_t i : order) {
        iv.knockout_keys.push_back(keys[i]);
        if (keys_from.empty()) continue;
        iv.knockout_from.push_back(keys_from[i]);
        iv.knockout_until.push_back(keys_until[i]);
    }
    I.interventions = std::move(iv);
    I.ctx->set_interventions(I.interventions.layers.empty() ? nullptr : &I.interventions);
}

std::vector<std::vector<double>> Engine::head_output_sums(const std::vector<int32_t>& tokens, int64_t& n_positions) {
    Impl& I = *impl_;
    HeadOutputSums sums;
    I.ctx->reset();
    I.feed(tokens, false, nullptr, nullptr, &sums);
    n_positions = sums.n_tokens;
    return sums.sums;
}

std::vector<std::vector<double>> Engine::head_output_sums(const std::string& prompt, const std::vector<Image>& images,
                                                          const std::string& marker, int64_t& n_positions) {
    Impl& I = *impl_;
    const std::vector<PreparedImage> prepared = I.prepare_all(images);
    const MultimodalPrompt p = I.vision_runner().assemble(prompt, prepared, marker);
    Impl::KnockoutKeys knock(I, MultimodalRunner::visual_positions(p));
    HeadOutputSums sums;
    I.reset_for(p);
    I.mm->prefill(*I.ctx, p, prepared, I.n_batch, false, [&I] { I.check_interrupt(); }, nullptr, nullptr, &sums);
    n_positions = sums.n_tokens;
    return sums.sums;
}

void Engine::set_interrupt_check(std::function<void()> check) { impl_->interrupt_check = std::move(check); }

const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }

const std::vector<int32_t>& Engine::eog_tokens() const { return impl_->eog; }

std::vector<float> Engine::append(const std::vector<int32_t>& tokens) { return impl_->feed(tokens, false); }

int64_t Engine::n_past() const { return impl_->ctx->n_past(); }

size_t Engine::kv_bytes() const { return impl_->ctx->kv_bytes(); }

SparseConfig Engine::Impl::sparse_config(const SparseOptions& o) const {
    const TextHParams& hp = text.hp;
    if (o.core_kv_heads.empty()) {
        throw InputError("the CoRe head set is empty: give at least one (layer, head), e.g. ranking.top(0.05)");
    }
    if (o.sink < 0) throw InputError("sink must be >= 0 (got " + std::to_string(o.sink) + ")");
    if (o.visual_budget < 0) throw InputError("visual_budget must be >= 0 (got " + std::to_string(o.visual_budget) + ")");
    SparseConfig c;
    c.core.assign(hp.n_layer, std::vector<uint8_t>(hp.n_head_kv, 0));
    for (const auto& [l, h] : o.core_kv_heads) {
        if (l < 0 || l >= hp.n_layer) {
            throw InputError("layer " + std::to_string(l) + " is out of range [0, " + std::to_string(hp.n_layer) + ")");
        }
        if (h < 0 || h >= hp.n_head_kv) {
            throw InputError("KV head " + std::to_string(h) + " is out of range [0, " + std::to_string(hp.n_head_kv) + ")");
        }
        if (c.core[l][h]) throw InputError("KV head (" + std::to_string(l) + ", " + std::to_string(h) + ") is listed twice");
        c.core[l][h] = 1;
    }
    c.sink = o.sink;
    c.visual_budget = o.visual_budget;
    if (o.visual_keep == "snapkv") {
        c.keep = SparseConfig::Keep::snapkv;
    } else if (o.visual_keep == "first") {
        c.keep = SparseConfig::Keep::first;
    } else if (o.visual_keep == "last") {
        c.keep = SparseConfig::Keep::last;
    } else {
        throw InputError("visual_keep must be 'snapkv', 'first' or 'last' (got '" + o.visual_keep + "')");
    }
    return c;
}

void Engine::set_sparse(const std::optional<SparseOptions>& o) {
    Impl& I = *impl_;
    std::optional<SparseConfig> cfg;
    if (o) {
        cfg = I.sparse_config(*o);
        for (const auto& L : I.interventions.layers) {
            if (!L.knockout.empty()) throw InputError("clear the knockout interventions before entering the CoRe-sparse mode");
        }
    }
    I.sparse.reset();  // the context falls back to the dense cache when allocation fails
    I.ctx->set_sparse(cfg ? &*cfg : nullptr);
    I.sparse = o;
}

const std::optional<SparseOptions>& Engine::sparse_options() const { return impl_->sparse; }

KVStats Engine::kv_stats() const { return impl_->ctx->kv_stats(); }

Engine::~Engine() = default;

const TextInfo& Engine::text_info() const { return impl_->text_info; }
const VisionInfo* Engine::vision_info() const { return impl_->vision_info ? &*impl_->vision_info : nullptr; }
const std::string& Engine::backend_name() const { return impl_->backends->name; }
int Engine::n_threads() const { return impl_->backends->n_threads; }
int64_t Engine::n_ctx() const { return impl_->n_ctx; }
size_t Engine::weight_bytes() const {
    return impl_->text_weights->nbytes() + (impl_->vision_weights ? impl_->vision_weights->nbytes() : 0);
}

// --- images -------------------------------------------------------------------------------

std::vector<float> Engine::logits(const std::string& prompt, const std::vector<Image>& images, bool all_positions,
                                  const std::string& marker) {
    Impl& I = *impl_;
    const std::vector<PreparedImage> prepared = I.prepare_all(images);
    const MultimodalPrompt p = I.vision_runner().assemble(prompt, prepared, marker);
    Impl::KnockoutKeys knock(I, MultimodalRunner::visual_positions(p));
    I.reset_for(p);
    return I.mm->prefill(*I.ctx, p, prepared, I.n_batch, all_positions, [&I] { I.check_interrupt(); });
}

AttentionTaps Engine::attention(const std::string& prompt, const std::vector<Image>& images, const std::string& marker,
                                const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                                bool full_rows, const std::vector<float>& relevance, int64_t n_regions) {
    Impl& I = *impl_;
    const std::vector<PreparedImage> prepared = I.prepare_all(images);
    const MultimodalPrompt p = I.vision_runner().assemble(prompt, prepared, marker);
    Impl::KnockoutKeys knock(I, MultimodalRunner::visual_positions(p));
    return I.attention(static_cast<int64_t>(p.ids.size()), positions, layers, full_rows, relevance, n_regions,
                       [&](const TapRequest& req, const std::function<void(size_t, const TapResult&)>& on_taps) {
                           I.ctx->reset();
                           I.mm->prefill(*I.ctx, p, prepared, I.n_batch, false, [&I] { I.check_interrupt(); }, &req,
                                         on_taps);
                       });
}

std::vector<int32_t> Engine::generate(const std::string& prompt, const std::vector<Image>& images,
                                      const GenerateOptions& o, const TokenCallback& on_token, const std::string& marker) {
    Impl& I = *impl_;
    Sampler sampler = make_sampler(o);
    const std::vector<PreparedImage> prepared = I.prepare_all(images);
    const MultimodalPrompt p = I.vision_runner().assemble(prompt, prepared, marker);
    Impl::KnockoutKeys knock(I, MultimodalRunner::visual_positions(p));
    I.reset_for(p);
    std::vector<float> logits = I.mm->prefill(*I.ctx, p, prepared, I.n_batch, false, [&I] { I.check_interrupt(); });
    return I.sample_loop(sampler, std::move(logits), p.ids, o, on_token);
}

MultimodalTokens Engine::tokenize(const std::string& prompt, const std::vector<Image>& images,
                                  const std::string& marker) const {
    const Impl& I = *impl_;
    const std::vector<PreparedImage> prepared = I.prepare_all(images);
    const MultimodalPrompt p = I.vision_runner().assemble(prompt, prepared, marker);
    MultimodalTokens t;
    t.ids = p.ids;
    for (const VisualSpan& s : p.spans) {
        for (int64_t k = 0; k < s.n; ++k) t.visual_positions.push_back(static_cast<int32_t>(s.start + k));
    }
    return t;
}

void Engine::set_image_cache_limit(size_t bytes) { impl_->vision_runner().set_cache_limit(bytes); }

Engine::ImageCacheStats Engine::image_cache_stats() const {
    const MultimodalRunner::CacheStats s = impl_->vision_runner().cache_stats();
    return {s.bytes, s.limit, s.entries, s.hits, s.misses};
}

void Engine::clear_image_cache() { impl_->vision_runner().clear_cache(); }

std::vector<float> Engine::encode_image(const Image& image) {
    Impl& I = *impl_;
    return I.vision_runner().encode(I.vision_runner().prepare(image));
}

std::vector<PreprocessedView> Engine::preprocess_image(const Image& image) const {
    std::vector<PreprocessedView> out;
    for (VisionView& v : impl_->vision_runner().prepare(image).views) {
        out.push_back({v.width, v.height, std::move(v.pixels)});
    }
    return out;
}

std::vector<float> Engine::visual_token_boxes(const Image& image) const {
    return MultimodalRunner::token_boxes(impl_->vision_runner().prepare(image));
}

}  // namespace corehead
