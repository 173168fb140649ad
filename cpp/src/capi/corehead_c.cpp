// The C API (cpp/include/corehead/corehead.h) on top of corehead::Engine: argument checks that
// C cannot express (NULL pointers, counts without buffers, buffer sizes), conversion to the C++
// types, and the copy into the caller's buffers. Errors: see capi/boundary.h.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "capi/boundary.h"
#include "corehead/corehead.h"
#include "corehead/engine.h"
#include "heads/taps.h"
#include "image/image.h"

using corehead::InputError;
using corehead::capi::fail;
using corehead::capi::guarded;
using corehead::capi::require;

struct corehead_engine {
    explicit corehead_engine(const corehead::EngineOptions& o) : engine(o) {}
    corehead::Engine engine;
};

namespace {

corehead::Engine& engine_of(corehead_engine* e) {
    require(e, "engine");
    return e->engine;
}
const corehead::Engine& engine_of(const corehead_engine* e) {
    require(e, "engine");
    return e->engine;
}

const corehead::Tokenizer& tokenizer_of(const corehead::Engine& e) {
    const corehead::Tokenizer* t = e.tokenizer();
    if (!t) throw InputError("this model file carries no tokenizer: pass token ids (corehead_prompt.tokens) instead of text");
    return *t;
}

// `n` values at `p`, where p may be NULL only when n is 0.
template <class T>
std::vector<T> array_arg(const T* p, size_t n, const char* what) {
    if (n == 0) return {};
    if (!p) throw InputError(std::string(what) + " is NULL but its count is " + std::to_string(n));
    return std::vector<T>(p, p + n);
}

// The size-query / buffer convention of corehead.h: NULL = report the size only; short = error.
// Returns true when the caller's buffer can take `needed` elements.
bool fits(const void* buffer, size_t capacity, size_t needed, size_t* n_out, const char* what) {
    require(n_out, "n_out");
    *n_out = needed;
    if (!buffer) return false;
    if (capacity < needed) {
        throw corehead::capi::BufferTooSmall(std::string(what) + " needs " + std::to_string(needed) +
                                             " elements but its capacity is " + std::to_string(capacity));
    }
    return true;
}

// A prompt converted from corehead_prompt: token ids, or text + images.
struct Prompt {
    bool multimodal = false;
    std::vector<int32_t> ids;              // !multimodal
    std::string text;                      // multimodal
    std::vector<corehead::Image> images;   // multimodal
};

corehead::Image image_arg(const corehead_image& img, size_t i) {
    const std::string what = "images[" + std::to_string(i) + "]";
    if (img.width <= 0 || img.height <= 0 || img.width > corehead::kMaxImagePixels ||
        img.height > corehead::kMaxImagePixels || img.width * img.height > corehead::kMaxImagePixels) {
        throw InputError(what + " has " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                         " pixels: width and height must be positive, at most " +
                         std::to_string(corehead::kMaxImagePixels / 1'000'000) + " megapixels in all");
    }
    if (!img.rgb) throw InputError(what + ".rgb is NULL");
    corehead::Image out;
    out.width = img.width;
    out.height = img.height;
    out.rgb.assign(img.rgb, img.rgb + img.width * img.height * 3);
    return out;
}

Prompt prompt_arg(const corehead::Engine& e, const corehead_prompt* p) {
    require(p, "prompt");
    Prompt out;
    if (p->text && p->tokens) throw InputError("the prompt has both text and tokens: set one of them (the other NULL)");
    if (p->n_images > 0 && !p->images) throw InputError("prompt.images is NULL but prompt.n_images is " + std::to_string(p->n_images));
    if (p->n_images > 0) {
        if (!p->text) throw InputError("a prompt with images needs text (where COREHEAD_IMAGE_MARKER places them), not tokens");
        if (!e.vision_info()) {
            throw InputError("this engine has no vision projector: load it with an mmproj (corehead_engine_load(model, mmproj, ...)) to pass images");
        }
        out.multimodal = true;
        out.text = p->text;
        for (size_t i = 0; i < p->n_images; ++i) out.images.push_back(image_arg(p->images[i], i));
        return out;
    }
    if (p->text) {
        if (!*p->text) throw InputError("the prompt text is empty");
        out.ids = tokenizer_of(e).tokenize(p->text, true, true);
    } else {
        out.ids = array_arg(p->tokens, p->n_tokens, "prompt.tokens");
        const int64_t n_vocab = e.text_info().n_vocab;
        for (int32_t id : out.ids) {
            if (id < 0 || id >= n_vocab) {
                throw InputError("token id " + std::to_string(id) + " is out of range [0, " + std::to_string(n_vocab) + ")");
            }
        }
    }
    if (out.ids.empty()) throw InputError("the prompt is empty: set prompt.text or prompt.tokens");
    return out;
}

// Prompt length in tokens (images expanded: preprocesses them, no forward pass).
int64_t prompt_tokens(const corehead::Engine& e, const Prompt& p) {
    if (!p.multimodal) return static_cast<int64_t>(p.ids.size());
    return static_cast<int64_t>(e.tokenize(p.text, p.images, COREHEAD_IMAGE_MARKER).ids.size());
}

std::string string_or(const char* s, const char* fallback) { return s ? s : fallback; }

corehead::GenerateOptions generate_options(const corehead_generate_params& p) {
    if (p.max_tokens < 0) throw InputError("max_tokens must be >= 0, got " + std::to_string(p.max_tokens));
    corehead::GenerateOptions o;
    o.max_tokens = p.max_tokens;
    o.temperature = p.temperature;
    o.top_k = p.top_k;
    o.top_p = p.top_p;
    o.min_p = p.min_p;
    o.repeat_penalty = p.repeat_penalty;
    o.repeat_last_n = p.repeat_last_n;
    o.seed = p.seed;
    o.stop_at_eog = p.stop_at_eog;
    return o;
}

}  // namespace

extern "C" {

// ---- library ------------------------------------------------------------------------------

const char* corehead_version(void) { return COREHEAD_VERSION; }

const char* corehead_last_error(void) { return corehead::capi::last_error(); }

const char* corehead_status_name(corehead_status status) {
    switch (status) {
        case COREHEAD_OK: return "COREHEAD_OK";
        case COREHEAD_ERR_INVALID_ARGUMENT: return "COREHEAD_ERR_INVALID_ARGUMENT";
        case COREHEAD_ERR_FILE_NOT_FOUND: return "COREHEAD_ERR_FILE_NOT_FOUND";
        case COREHEAD_ERR_MODEL: return "COREHEAD_ERR_MODEL";
        case COREHEAD_ERR_CONTEXT_OVERFLOW: return "COREHEAD_ERR_CONTEXT_OVERFLOW";
        case COREHEAD_ERR_BUFFER_TOO_SMALL: return "COREHEAD_ERR_BUFFER_TOO_SMALL";
        case COREHEAD_ERR_OUT_OF_MEMORY: return "COREHEAD_ERR_OUT_OF_MEMORY";
        case COREHEAD_ERR_RUNTIME: return "COREHEAD_ERR_RUNTIME";
    }
    return "unknown status";
}

// ---- engine -------------------------------------------------------------------------------

corehead_engine_params corehead_engine_default_params(void) {
    const corehead::EngineOptions d;
    corehead_engine_params p;
    p.n_threads = d.n_threads;
    p.n_ctx = d.n_ctx;
    p.n_batch = d.n_batch;
    p.backend = "auto";
    p.kv_type = "auto";
    return p;
}

corehead_engine* corehead_engine_load(const char* model, const char* mmproj, const corehead_engine_params* params) {
    corehead_engine* out = nullptr;
    const corehead_status st = guarded([&] {
        require(model, "model (the path of a language-model GGUF)");
        const corehead_engine_params p = params ? *params : corehead_engine_default_params();
        corehead::EngineOptions o;
        o.model = model;
        o.mmproj = string_or(mmproj, "");
        o.n_threads = p.n_threads;
        o.n_ctx = p.n_ctx;
        o.n_batch = p.n_batch;
        o.backend = string_or(p.backend, "auto");
        o.kv_type = string_or(p.kv_type, "auto");
        if (o.n_threads < 0) throw InputError("n_threads must be >= 0 (0 = automatic), got " + std::to_string(o.n_threads));
        out = new corehead_engine(o);
        return COREHEAD_OK;
    });
    return st == COREHEAD_OK ? out : nullptr;
}

void corehead_engine_free(corehead_engine* engine) { delete engine; }

corehead_status corehead_engine_get_info(const corehead_engine* engine, corehead_engine_info* info) {
    return guarded([&] {
        const corehead::Engine& e = engine_of(engine);
        require(info, "info");
        const corehead::TextInfo& t = e.text_info();
        corehead_engine_info i{};
        i.n_layer = static_cast<int32_t>(t.n_layer);
        i.n_head = static_cast<int32_t>(t.n_head);
        i.n_head_kv = static_cast<int32_t>(t.n_head_kv);
        i.head_dim = static_cast<int32_t>(t.head_dim);
        i.n_embd = static_cast<int32_t>(t.n_embd);
        i.n_vocab = static_cast<int32_t>(t.n_vocab);
        i.n_ctx = e.n_ctx();
        i.has_vision = e.vision_info() != nullptr;
        std::snprintf(i.arch, sizeof i.arch, "%s", t.arch.c_str());
        *info = i;
        return COREHEAD_OK;
    });
}

// ---- tokens -------------------------------------------------------------------------------

corehead_status corehead_tokenize(const corehead_engine* engine, const char* text, bool add_special, bool parse_special,
                                  int32_t* tokens, size_t capacity, size_t* n_out) {
    return guarded([&] {
        const corehead::Engine& e = engine_of(engine);
        require(text, "text");
        require(n_out, "n_out");
        const std::vector<int32_t> ids = tokenizer_of(e).tokenize(text, add_special, parse_special);
        if (fits(tokens, capacity, ids.size(), n_out, "tokens")) std::copy(ids.begin(), ids.end(), tokens);
        return COREHEAD_OK;
    });
}

corehead_status corehead_detokenize(const corehead_engine* engine, const int32_t* tokens, size_t n_tokens,
                                    bool remove_special, char* text, size_t capacity, size_t* n_out) {
    return guarded([&] {
        const corehead::Engine& e = engine_of(engine);
        require(n_out, "n_out");
        const std::string s = tokenizer_of(e).detokenize(array_arg(tokens, n_tokens, "tokens"), remove_special, false);
        *n_out = s.size();
        if (!text) return COREHEAD_OK;
        if (capacity < s.size() + 1) {
            throw corehead::capi::BufferTooSmall("text needs " + std::to_string(s.size() + 1) +
                                                 " bytes (with the NUL) but its capacity is " + std::to_string(capacity));
        }
        std::memcpy(text, s.data(), s.size());
        text[s.size()] = '\0';
        return COREHEAD_OK;
    });
}

bool corehead_token_is_eog(const corehead_engine* engine, int32_t token) {
    if (!engine) return false;
    const std::vector<int32_t>& eog = engine->engine.eog_tokens();
    return std::find(eog.begin(), eog.end(), token) != eog.end();
}

// ---- inference ----------------------------------------------------------------------------

corehead_status corehead_logits(corehead_engine* engine, const corehead_prompt* prompt, float* logits, size_t capacity,
                                size_t* n_out) {
    return guarded([&] {
        corehead::Engine& e = engine_of(engine);
        const Prompt p = prompt_arg(e, prompt);
        if (!fits(logits, capacity, static_cast<size_t>(e.text_info().n_vocab), n_out, "logits")) return COREHEAD_OK;
        const std::vector<float> out =
            p.multimodal ? e.logits(p.text, p.images, false, COREHEAD_IMAGE_MARKER) : e.logits(p.ids, false);
        std::copy(out.begin(), out.end(), logits);
        return COREHEAD_OK;
    });
}

corehead_generate_params corehead_generate_default_params(void) {
    const corehead::GenerateOptions d;
    corehead_generate_params p;
    p.max_tokens = static_cast<int32_t>(d.max_tokens);
    p.temperature = d.temperature;
    p.top_k = d.top_k;
    p.top_p = d.top_p;
    p.min_p = d.min_p;
    p.repeat_penalty = d.repeat_penalty;
    p.repeat_last_n = d.repeat_last_n;
    p.seed = d.seed;
    p.stop_at_eog = d.stop_at_eog;
    p.on_token = nullptr;
    p.user_data = nullptr;
    return p;
}

corehead_status corehead_generate(corehead_engine* engine, const corehead_prompt* prompt,
                                  const corehead_generate_params* params, int32_t* tokens, size_t capacity,
                                  size_t* n_out) {
    return guarded([&] {
        corehead::Engine& e = engine_of(engine);
        require(n_out, "n_out");
        *n_out = 0;
        const corehead_generate_params gp = params ? *params : corehead_generate_default_params();
        const corehead::GenerateOptions o = generate_options(gp);
        if (tokens && capacity < static_cast<size_t>(o.max_tokens)) {
            *n_out = static_cast<size_t>(o.max_tokens);
            throw corehead::capi::BufferTooSmall("tokens needs capacity >= max_tokens = " + std::to_string(o.max_tokens) +
                                                 " but its capacity is " + std::to_string(capacity));
        }
        const Prompt p = prompt_arg(e, prompt);
        const corehead::Tokenizer* tok = e.tokenizer();
        corehead::TokenCallback cb;
        if (gp.on_token) {
            cb = [&](int32_t id) {
                const std::string piece = tok ? tok->token_to_piece(id, false) : std::string();
                return gp.on_token(id, piece.data(), piece.size(), gp.user_data);
            };
        }
        const std::vector<int32_t> out =
            p.multimodal ? e.generate(p.text, p.images, o, cb, COREHEAD_IMAGE_MARKER) : e.generate(p.ids, o, cb);
        if (tokens) std::copy(out.begin(), out.end(), tokens);
        *n_out = out.size();
        return COREHEAD_OK;
    });
}

// ---- attention heads ----------------------------------------------------------------------

corehead_status corehead_attention(corehead_engine* engine, const corehead_prompt* prompt, const int32_t* positions,
                                   size_t n_positions, const int32_t* layers, size_t n_layers, float* out,
                                   size_t capacity, corehead_attention_shape* shape, size_t* n_out) {
    return guarded([&] {
        corehead::Engine& e = engine_of(engine);
        require(n_out, "n_out");
        const Prompt p = prompt_arg(e, prompt);
        const std::vector<int32_t> pos = array_arg(positions, n_positions, "positions");
        const std::vector<int32_t> lay = array_arg(layers, n_layers, "layers");
        // The shape, from the prompt length alone: a size query costs no forward pass.
        const int64_t n = prompt_tokens(e, p);
        corehead_attention_shape s;
        // A hybrid model (qwen35) taps its attention layers only.
        const corehead::TextInfo& ti = e.text_info();
        std::vector<bool> recurrent;
        if (!ti.attention_layers.empty()) {
            recurrent.assign(ti.n_layer, true);
            for (int32_t l : ti.attention_layers) recurrent[l] = false;
        }
        s.n_layer = static_cast<int32_t>(corehead::tap_layers(lay, ti.n_layer, recurrent).size());
        s.n_head = static_cast<int32_t>(e.text_info().n_head);
        s.n_pos = static_cast<int32_t>(corehead::tap_positions(n, pos).size());
        s.n_kv = n;
        if (shape) *shape = s;
        const size_t needed = static_cast<size_t>(s.n_layer) * s.n_head * s.n_pos * static_cast<size_t>(s.n_kv);
        if (!fits(out, capacity, needed, n_out, "out")) return COREHEAD_OK;
        const corehead::AttentionTaps taps =
            p.multimodal ? e.attention(p.text, p.images, COREHEAD_IMAGE_MARKER, pos, lay, true, {}, 0)
                         : e.attention(p.ids, pos, lay, true, {}, 0);
        if (taps.rows.size() != needed) {
            throw corehead::Error("internal error: attention returned " + std::to_string(taps.rows.size()) +
                                  " values, expected " + std::to_string(needed));
        }
        std::copy(taps.rows.begin(), taps.rows.end(), out);
        return COREHEAD_OK;
    });
}

corehead_status corehead_set_interventions(corehead_engine* engine, const corehead_intervention* items, size_t n_items,
                                           const int32_t* knockout_keys, size_t n_knockout_keys) {
    return guarded([&] {
        corehead::Engine& e = engine_of(engine);
        const std::vector<corehead_intervention> list = array_arg(items, n_items, "items");
        const size_t head_dim = static_cast<size_t>(e.text_info().head_dim);
        std::vector<corehead::HeadIntervention> ivs;
        for (size_t i = 0; i < list.size(); ++i) {
            const corehead_intervention& it = list[i];
            corehead::HeadIntervention h;
            h.layer = it.head.layer;
            h.head = it.head.head;
            switch (it.kind) {
                case COREHEAD_INTERVENTION_ZERO: h.kind = "zero"; break;
                case COREHEAD_INTERVENTION_KNOCKOUT: h.kind = "knockout"; break;
                case COREHEAD_INTERVENTION_MEAN:
                    h.kind = "mean";
                    if (!it.mean) throw InputError("items[" + std::to_string(i) + "].mean is NULL (a mean intervention needs head_dim values)");
                    h.mean.assign(it.mean, it.mean + head_dim);
                    break;
                default:
                    throw InputError("items[" + std::to_string(i) + "].kind is " + std::to_string(static_cast<int>(it.kind)) +
                                     ": use COREHEAD_INTERVENTION_ZERO, _KNOCKOUT or _MEAN");
            }
            ivs.push_back(std::move(h));
        }
        e.set_head_interventions(ivs, array_arg(knockout_keys, n_knockout_keys, "knockout_keys"));
        return COREHEAD_OK;
    });
}

corehead_sparse_params corehead_sparse_default_params(void) {
    const corehead::SparseOptions d;
    corehead_sparse_params p;
    p.sink = d.sink;
    p.visual_budget = d.visual_budget;
    p.visual_keep = "snapkv";
    return p;
}

corehead_status corehead_sparse(corehead_engine* engine, const corehead_head* core_heads, size_t n_heads,
                                const corehead_sparse_params* params) {
    return guarded([&] {
        corehead::Engine& e = engine_of(engine);
        const std::vector<corehead_head> heads = array_arg(core_heads, n_heads, "core_heads");
        if (heads.empty()) {
            e.set_sparse(std::nullopt);
            return COREHEAD_OK;
        }
        const corehead_sparse_params sp = params ? *params : corehead_sparse_default_params();
        const corehead::TextInfo& t = e.text_info();
        const int64_t group = t.n_head / t.n_head_kv;  // query heads per KV head
        std::set<std::pair<int32_t, int32_t>> kv;
        for (size_t i = 0; i < heads.size(); ++i) {
            const corehead_head& h = heads[i];
            if (h.layer < 0 || h.layer >= t.n_layer || h.head < 0 || h.head >= t.n_head) {
                throw InputError("core_heads[" + std::to_string(i) + "] = (" + std::to_string(h.layer) + ", " +
                                 std::to_string(h.head) + ") is out of range: layers [0, " + std::to_string(t.n_layer) +
                                 "), heads [0, " + std::to_string(t.n_head) + ")");
            }
            kv.insert({h.layer, static_cast<int32_t>(h.head / group)});
        }
        corehead::SparseOptions o;
        o.core_kv_heads.assign(kv.begin(), kv.end());
        o.sink = sp.sink;
        o.visual_budget = sp.visual_budget;
        o.visual_keep = string_or(sp.visual_keep, "snapkv");
        e.set_sparse(o);
        return COREHEAD_OK;
    });
}

}  // extern "C"
