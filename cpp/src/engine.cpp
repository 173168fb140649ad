// Engine: the facade over the model files, their weights, one text context and the multimodal
// runner. The work lives elsewhere: prefill (runtime/prefill), taps / interventions / CoRe-sparse
// policy (heads/), token layouts and images (runtime/multimodal), generation (runtime/sampler).
#include "corehead/engine.h"

#include <algorithm>
#include <map>

#include "ggml.h"
#include "heads/interventions.h"
#include "heads/sparse_policy.h"
#include "heads/taps.h"
#include "runtime/backend.h"
#include "runtime/multimodal.h"
#include "runtime/prefill.h"
#include "runtime/sampler.h"
#include "runtime/text_context.h"
#include "runtime/weights.h"
#include "text/family.h"
#include "text/text_model.h"
#include "tokenizer/vocab.h"
#include "vision/vision_model.h"

namespace corehead {

namespace {

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

ggml_type kv_cache_type(const std::string& name, int64_t file_type) {
    if (name == "auto") return file_type == 0 ? GGML_TYPE_F32 : GGML_TYPE_F16;
    if (name == "f16") return GGML_TYPE_F16;
    if (name == "f32") return GGML_TYPE_F32;
    throw InputError("kv_type must be 'auto', 'f16' or 'f32' (got '" + name + "')");
}

}  // namespace

TextInfo inspect_model(const std::string& path) { return text_info(open_text_model(path)); }

VisionInfo inspect_mmproj(const std::string& path) { return vision_info(open_mmproj(path)); }

struct Engine::Impl {
    std::unique_ptr<Backends> backends;
    TextModelFile text;
    std::optional<VisionModelFile> vision;
    TextInfo text_info;
    std::optional<VisionInfo> vision_info;
    std::unique_ptr<Weights> text_weights, vision_weights;
    TextWeights tw;
    std::unique_ptr<TextContext> ctx;
    std::unique_ptr<MultimodalRunner> mm;  // with an mmproj
    int64_t n_ctx = 0, n_batch = 512;
    std::vector<int32_t> eog;
    std::optional<Tokenizer> tokenizer;
    std::function<void()> interrupt_check;
    ProgressCallback progress;
    HeadInterventions interventions;
    std::vector<std::vector<float>> deltanet_gates;  // set_deltanet_ablation, kept across set_head_interventions
    void install_interventions() {
        set_value_gates(interventions, deltanet_gates);
        ctx->set_interventions(interventions.layers.empty() ? nullptr : &interventions);
    }
    std::optional<SparseOptions> sparse;  // CoRe-sparse mode (docs/architecture.md §6)

    PrefillOptions options(bool all_positions) const {
        PrefillOptions o;
        o.n_batch = n_batch;
        o.all_positions = all_positions;
        o.interrupt = interrupt_check;
        o.progress = progress;
        return o;
    }
    std::vector<float> feed(const std::vector<int32_t>& tokens, const PrefillOptions& o) {
        Prefill run(*ctx, o, static_cast<int64_t>(tokens.size()));
        run.tokens(tokens.data(), 0, static_cast<int64_t>(tokens.size()));
        return run.take();
    }

    MultimodalRunner& vision_runner() const {
        if (!mm) throw InputError("this engine has no vision projector: images need Engine(model, mmproj=...)");
        return *mm;
    }
    // A multimodal prompt, its images prepared (validated) and assembled before any compute.
    struct Call {
        std::vector<PreparedImage> images;
        MultimodalPrompt prompt;
    };
    Call assemble(const std::string& prompt, const std::vector<Image>& images, const std::string& marker) const {
        Call c;
        for (const Image& img : images) c.images.push_back(vision_runner().prepare(img));
        c.prompt = vision_runner().assemble(prompt, c.images, marker);
        return c;
    }
    // A fresh context for a text prompt: knockouts use the explicit keys.
    void start_text() {
        ctx->reset();
        image_end = 0;
        activate_knockout(interventions, {});
    }
    int64_t image_end = 0;  // the cache index after the current prompt's last visual token
    // A fresh context for prompt `c`, told where its visual tokens are when sparse; knocked-out
    // heads may not see its visual tokens (from here on, generated tokens included).
    std::vector<float> prefill(const Call& c, PrefillOptions o) {
        std::vector<std::vector<int32_t>> per_image(c.images.size());
        for (const VisualSpan& s : c.prompt.spans) {
            for (int64_t i = 0; i < s.n; ++i) per_image.at(s.image).push_back(static_cast<int32_t>(s.start + i));
        }
        activate_knockout(interventions, per_image);
        ctx->reset();
        image_end = 0;
        for (const VisualSpan& s : c.prompt.spans) image_end = std::max(image_end, s.start + s.n);
        if (sparse) {
            SparsePlan plan;
            plan.n_prompt = static_cast<int64_t>(c.prompt.ids.size());
            plan.n_batch = o.n_batch;
            // Chunks: one per image, one per frame (view) of a video.
            std::map<std::pair<int, int>, int> chunk_of;
            for (const VisualSpan& s : c.prompt.spans) {
                const std::pair<int, int> key{s.image, c.images.at(s.image).n_frames > 0 ? s.view : 0};
                const int chunk = chunk_of.emplace(key, static_cast<int>(chunk_of.size())).first->second;
                plan.spans.push_back({s.start, s.n, s.image, chunk});
            }
            ctx->set_plan(plan);
        }
        return mm->prefill(*ctx, c.prompt, c.images, std::move(o));
    }

    // Samples up to o.max_tokens after a prefill that produced `logits`.
    std::vector<int32_t> sample_loop(Sampler& sampler, std::vector<float> logits, std::vector<int32_t> history,
                                     const GenerateOptions& o, const TokenCallback& on_token) {
        std::vector<int32_t> out;
        for (int64_t i = 0; i < o.max_tokens; ++i) {
            const int32_t tok = sampler.sample(logits.data(), text.hp.n_vocab, history);
            out.push_back(tok);
            history.push_back(tok);
            if (on_token && !on_token(tok)) break;
            if (o.stop_at_eog && std::find(eog.begin(), eog.end(), tok) != eog.end()) break;
            if (i + 1 == o.max_tokens || ctx->n_past() >= ctx->n_ctx()) break;  // never past the context
            logits = feed({tok}, options(false));  // checks for an interrupt first
        }
        return out;
    }

    // Runs `prefill_with(options)` with taps and collects them.
    AttentionTaps attention(int64_t n, const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                            bool full_rows, const std::vector<float>& relevance, int64_t n_regions,
                            const std::function<void(const PrefillOptions&)>& prefill_with) {
        if (sparse) throw_needs_dense_cache("attention taps");
        TapCollector taps(n, positions, layers, full_rows, relevance, n_regions, text.hp.n_layer, text.hp.n_head,
                          text.hp.recurrent_layers);
        PrefillOptions o = options(false);
        o.taps = &taps.request();
        o.on_taps = [&taps](size_t first, const TapResult& r) { taps.add(first, r); };
        prefill_with(o);
        return taps.take();
    }
};

Engine::Engine(const EngineOptions& o) : impl_(std::make_unique<Impl>()) {
    Impl& I = *impl_;
    if (o.model.empty()) throw InputError("model path is empty");
    if (o.n_ctx < 16 || o.n_ctx > (int64_t(1) << 24)) {
        throw InputError("n_ctx must be between 16 and 16777216 tokens (got " + std::to_string(o.n_ctx) + ")");
    }
    if (o.n_batch < 1 || o.n_batch > 65536) throw InputError("n_batch must be between 1 and 65536");
    // Validate both files and every option completely before allocating anything.
    I.text = open_text_model(o.model);
    const TextHParams& hp = I.text.hp;
    if (I.text.vocab_only) {
        I.text.file->fail("this GGUF holds only a tokenizer (no weights); use corehead.Tokenizer(path) to tokenize with it");
    }
    I.text_info = corehead::text_info(I.text);
    if (!o.mmproj.empty()) {
        I.vision = open_mmproj(o.mmproj);
        if (I.vision->hp.n_out != hp.n_embd) {
            I.vision->file->fail("this mmproj projects images to " + std::to_string(I.vision->hp.n_out) +
                                 "-dimensional embeddings but the model '" + o.model + "' has n_embd = " +
                                 std::to_string(hp.n_embd) + ": it belongs to a different model");
        }
        I.vision_info = corehead::vision_info(*I.vision);
    }
    std::optional<SparseConfig> sparse_cfg;
    if (o.sparse) sparse_cfg = make_sparse_config(*o.sparse, hp);
    const ggml_type kv_type = kv_cache_type(o.kv_type, I.text.file_type);
    I.sparse = o.sparse;
    I.n_ctx = o.n_ctx;
    I.n_batch = o.n_batch;
    I.backends = create_backends(o.backend, o.n_threads);
    // Every text matrix except the token embedding (read by get_rows) is only a mul_mat weight.
    I.text_weights = std::make_unique<Weights>(*I.text.file, I.backends->main,
                                               [](const std::string& name) { return name != "token_embd.weight"; });
    if (I.vision) I.vision_weights = std::make_unique<Weights>(*I.vision->file, I.backends->main);
    I.tw = text_tensor_table(*I.text.family, hp).resolve(*I.text_weights);
    if (!I.text.tokenizer_model.empty() && I.text.tokenizer_model != "none") {
        I.tokenizer = Tokenizer(std::shared_ptr<const Vocab>(Vocab::from_gguf(*I.text.file)));
        I.eog = I.tokenizer->eog_tokens();
    } else {
        I.eog = I.text.eog_tokens;
    }
    I.ctx = std::make_unique<TextContext>(*I.text.family, hp, I.tw, *I.backends, o.n_ctx, kv_type,
                                          sparse_cfg ? &*sparse_cfg : nullptr);
    if (I.vision) {
        I.mm = std::make_unique<MultimodalRunner>(*I.vision, *I.vision_weights, *I.backends,
                                                  I.tokenizer ? &*I.tokenizer : nullptr, hp.n_embd, hp.arch,
                                                  I.text.family->positions() == RopePositions::mrope, o.model,
                                                  hp.n_deepstack);
    }
}

Engine::~Engine() = default;

// --- text ---------------------------------------------------------------------------------

std::vector<float> Engine::logits(const std::vector<int32_t>& tokens, bool all_positions) {
    impl_->start_text();
    return impl_->feed(tokens, impl_->options(all_positions));
}

std::vector<float> Engine::logits_at(const std::vector<int32_t>& tokens, const std::vector<int32_t>& rows) {
    if (rows.empty()) throw InputError("logits_at needs at least one row");
    PrefillOptions o = impl_->options(false);
    o.rows = rows;
    impl_->start_text();
    return impl_->feed(tokens, o);
}

std::vector<float> Engine::append(const std::vector<int32_t>& tokens, bool all_positions) {
    return impl_->feed(tokens, impl_->options(all_positions));
}

void Engine::truncate(int64_t n) {
    Impl& I = *impl_;
    if (n < I.image_end && n < I.ctx->n_past()) {
        throw InputError("cannot truncate to position " + std::to_string(n) + ": the prompt's images end at " +
                         std::to_string(I.image_end) + " (re-run the prompt instead)");
    }
    I.ctx->truncate(n);
}

std::vector<float> Engine::append_branches(const std::vector<std::pair<int64_t, std::vector<int32_t>>>& branches) {
    Impl& I = *impl_;
    const int64_t n_past = I.ctx->n_past();
    if (branches.empty()) throw InputError("append_branches needs at least one branch");
    if (I.ctx->has_recurrent_state()) {
        // Branches share one pass; a recurrent layer would run them one after another into one state.
        throw InputError("append_branches needs a model whose every layer is attention: this model's recurrent "
                         "layers keep one state per sequence; run each continuation after its prompt instead");
    }
    for (const auto& [prefix, tokens] : branches) {
        if (tokens.empty()) throw InputError("a branch has no tokens");
        if (prefix < 1 || prefix > n_past) {
            throw InputError("a branch's prefix length " + std::to_string(prefix) + " is outside [1, " +
                             std::to_string(n_past) + "] (the current sequence)");
        }
        if (prefix < I.image_end) {
            throw InputError("a branch cannot start at position " + std::to_string(prefix) + ": the prompt's images end at " +
                             std::to_string(I.image_end) + " (re-run the prompt instead)");
        }
    }
    // Branches packed into batches of at most n_batch rows; each batch is forgotten afterwards.
    // A branch longer than n_batch runs alone, in n_batch chunks.
    std::vector<float> out;
    size_t i = 0;
    while (i < branches.size()) {
        if (static_cast<int64_t>(branches[i].second.size()) > I.n_batch) {
            I.ctx->truncate(branches[i].first);
            std::vector<float> lg = I.feed(branches[i].second, I.options(true));
            I.ctx->truncate(n_past);
            out.insert(out.end(), lg.begin(), lg.end());
            ++i;
            continue;
        }
        DecoderBatch b;
        for (; i < branches.size(); ++i) {
            const auto& [prefix, tokens] = branches[i];
            const int64_t len = static_cast<int64_t>(tokens.size());
            if (len > I.n_batch || (b.n_tokens > 0 && b.n_tokens + len > I.n_batch)) break;
            const int32_t first = static_cast<int32_t>(b.n_tokens);
            for (size_t j = 0; j < tokens.size(); ++j) {
                b.tokens.push_back(tokens[j]);
                b.branch_first.push_back(first);
                b.branch_prefix.push_back(prefix);
            }
            b.n_tokens += static_cast<int64_t>(tokens.size());
        }
        b.output_rows.resize(static_cast<size_t>(b.n_tokens));
        for (int64_t r = 0; r < b.n_tokens; ++r) b.output_rows[r] = static_cast<int32_t>(r);
        if (I.interrupt_check) I.interrupt_check();
        std::vector<float> lg = I.ctx->decode(b);
        I.ctx->truncate(n_past);
        out.insert(out.end(), lg.begin(), lg.end());
    }
    return out;
}

std::vector<int32_t> Engine::generate(const std::vector<int32_t>& prompt, const GenerateOptions& o,
                                      const TokenCallback& on_token) {
    Sampler sampler = make_sampler(o);  // validates before any compute
    Impl& I = *impl_;
    I.start_text();
    return I.sample_loop(sampler, I.feed(prompt, I.options(false)), prompt, o, on_token);
}

AttentionTaps Engine::attention(const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                                const std::vector<int32_t>& layers, bool full_rows,
                                const std::vector<float>& relevance, int64_t n_regions) {
    Impl& I = *impl_;
    return I.attention(static_cast<int64_t>(tokens.size()), positions, layers, full_rows, relevance, n_regions,
                       [&](const PrefillOptions& o) {
                           I.start_text();
                           I.feed(tokens, o);
                       });
}

namespace {
// Head sums (and the head means made from them) are [n_layer, n_head * head_dim] arrays.
void check_uniform_head_size(const TextHParams& hp) {
    if (hp.uniform_head_v()) return;
    throw InputError("head output sums / head means need one head size in every layer, but this " + hp.arch +
                     " model's layers have heads of " + std::to_string(hp.head_v(0)) + " and " +
                     std::to_string(hp.head_dim_v) + " values; use zero ablation or knockout instead of mean ablation");
}
}  // namespace

std::vector<std::vector<double>> Engine::head_output_sums(const std::vector<int32_t>& tokens, int64_t& n_positions) {
    Impl& I = *impl_;
    check_uniform_head_size(I.text.hp);
    HeadOutputSums sums;
    PrefillOptions o = I.options(false);
    o.head_sums = &sums;
    I.start_text();
    I.feed(tokens, o);
    n_positions = sums.n_tokens;
    return sums.sums;
}

// --- images -------------------------------------------------------------------------------

std::vector<float> Engine::logits(const std::string& prompt, const std::vector<Image>& images, bool all_positions,
                                  const std::string& marker) {
    return impl_->prefill(impl_->assemble(prompt, images, marker), impl_->options(all_positions));
}

std::vector<float> Engine::logits_at(const std::string& prompt, const std::vector<Image>& images,
                                     const std::vector<int32_t>& rows, const std::string& marker) {
    if (rows.empty()) throw InputError("logits_at needs at least one row");
    PrefillOptions o = impl_->options(false);
    o.rows = rows;
    return impl_->prefill(impl_->assemble(prompt, images, marker), std::move(o));
}

std::vector<int32_t> Engine::generate(const std::string& prompt, const std::vector<Image>& images,
                                      const GenerateOptions& o, const TokenCallback& on_token, const std::string& marker) {
    Impl& I = *impl_;
    Sampler sampler = make_sampler(o);
    const Impl::Call c = I.assemble(prompt, images, marker);
    return I.sample_loop(sampler, I.prefill(c, I.options(false)), c.prompt.ids, o, on_token);
}

AttentionTaps Engine::attention(const std::string& prompt, const std::vector<Image>& images, const std::string& marker,
                                const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                                bool full_rows, const std::vector<float>& relevance, int64_t n_regions) {
    Impl& I = *impl_;
    const Impl::Call c = I.assemble(prompt, images, marker);
    return I.attention(static_cast<int64_t>(c.prompt.ids.size()), positions, layers, full_rows, relevance, n_regions,
                       [&](const PrefillOptions& o) { I.prefill(c, o); });
}

std::vector<std::vector<double>> Engine::head_output_sums(const std::string& prompt, const std::vector<Image>& images,
                                                          const std::string& marker, int64_t& n_positions) {
    Impl& I = *impl_;
    check_uniform_head_size(I.text.hp);
    HeadOutputSums sums;
    PrefillOptions o = I.options(false);
    o.head_sums = &sums;
    I.prefill(I.assemble(prompt, images, marker), o);
    n_positions = sums.n_tokens;
    return sums.sums;
}

MultimodalTokens Engine::tokenize(const std::string& prompt, const std::vector<Image>& images,
                                  const std::string& marker) const {
    const Impl::Call c = impl_->assemble(prompt, images, marker);
    const std::vector<int32_t>& pos = c.prompt.positions;  // 4 sections when M-RoPE; the 4th is unused
    std::vector<int32_t> rope(pos.begin(), pos.begin() + static_cast<std::ptrdiff_t>(pos.empty() ? 0 : 3 * c.prompt.ids.size()));
    return {c.prompt.ids, MultimodalRunner::visual_positions(c.prompt), std::move(rope)};
}

std::vector<float> Engine::encode_image(const Image& image) {
    MultimodalRunner& mm = impl_->vision_runner();
    return mm.encode(mm.prepare(image));
}

std::vector<PreprocessedView> Engine::preprocess_image(const Image& image) const {
    std::vector<PreprocessedView> out;
    for (VisionView& v : impl_->vision_runner().prepare(image).views) out.push_back({v.width, v.height, std::move(v.pixels)});
    return out;
}

std::vector<float> Engine::visual_token_boxes(const Image& image) const {
    return MultimodalRunner::token_boxes(impl_->vision_runner().prepare(image));
}

std::vector<int32_t> Engine::visual_token_frames(const Image& image) const {
    return MultimodalRunner::token_frames(impl_->vision_runner().prepare(image));
}

void Engine::set_image_cache_limit(size_t bytes) { impl_->vision_runner().set_cache_limit(bytes); }

Engine::ImageCacheStats Engine::image_cache_stats() const {
    const MultimodalRunner::CacheStats s = impl_->vision_runner().cache_stats();
    return {s.bytes, s.limit, s.entries, s.hits, s.misses};
}

void Engine::clear_image_cache() { impl_->vision_runner().clear_cache(); }

// --- interventions and the CoRe-sparse mode -----------------------------------------------

void Engine::set_head_interventions(const std::vector<HeadIntervention>& list, const std::vector<int32_t>& keys,
                                    const std::vector<int32_t>& keys_from, const std::vector<int32_t>& keys_until,
                                    const std::string& knockout_queries) {
    Impl& I = *impl_;
    HeadInterventions iv =
        compile_interventions(list, keys, keys_from, keys_until, knockout_queries, I.text.hp, I.ctx->n_ctx());
    if (I.sparse && iv.any_knockout()) throw_needs_dense_cache("knockout interventions");
    I.interventions = std::move(iv);
    I.install_interventions();
}

void Engine::set_deltanet_ablation(const std::vector<std::pair<int32_t, int32_t>>& value_heads) {
    Impl& I = *impl_;
    I.deltanet_gates = compile_deltanet_ablation(value_heads, I.text.hp);
    I.install_interventions();
}

void Engine::set_sparse(const std::optional<SparseOptions>& o) {
    Impl& I = *impl_;
    std::optional<SparseConfig> cfg;
    if (o) {
        cfg = make_sparse_config(*o, I.text.hp);
        if (I.interventions.any_knockout()) {
            throw InputError("clear the knockout interventions before entering the CoRe-sparse mode");
        }
    }
    I.sparse.reset();  // the context falls back to the dense cache when allocation fails
    I.ctx->set_sparse(cfg ? &*cfg : nullptr);
    I.sparse = o;
}

const std::optional<SparseOptions>& Engine::sparse_options() const { return impl_->sparse; }
KVStats Engine::kv_stats() const { return impl_->ctx->kv_stats(); }

// --- accessors ----------------------------------------------------------------------------

void Engine::set_interrupt_check(std::function<void()> check) { impl_->interrupt_check = std::move(check); }
void Engine::set_progress_callback(ProgressCallback progress) { impl_->progress = std::move(progress); }
const Tokenizer* Engine::tokenizer() const { return impl_->tokenizer ? &*impl_->tokenizer : nullptr; }
const std::vector<int32_t>& Engine::eog_tokens() const { return impl_->eog; }
int64_t Engine::n_past() const { return impl_->ctx->n_past(); }
size_t Engine::kv_bytes() const { return impl_->ctx->kv_bytes(); }
const TextInfo& Engine::text_info() const { return impl_->text_info; }
const VisionInfo* Engine::vision_info() const { return impl_->vision_info ? &*impl_->vision_info : nullptr; }
const std::string& Engine::backend_name() const { return impl_->backends->name; }

std::map<std::string, std::map<std::string, int64_t>> Engine::placement_nodes() const {
    std::lock_guard<std::mutex> lock(impl_->backends->placement_mutex);
    return impl_->backends->placement.nodes;
}

std::map<std::string, std::vector<std::string>> Engine::cpu_fallback_ops() const {
    std::lock_guard<std::mutex> lock(impl_->backends->placement_mutex);
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& [part, ops] : impl_->backends->placement.cpu_ops) out[part] = {ops.begin(), ops.end()};
    return out;
}
int Engine::n_threads() const { return impl_->backends->n_threads; }
int64_t Engine::n_ctx() const { return impl_->n_ctx; }
size_t Engine::weight_bytes() const {
    return impl_->text_weights->nbytes() + (impl_->vision_weights ? impl_->vision_weights->nbytes() : 0);
}

std::optional<std::string> Engine::metadata_string(const std::string& key) const {
    const GgufFile& f = *impl_->text.file;
    return f.has(key) ? f.find_str(key) : std::nullopt;
}

}  // namespace corehead
