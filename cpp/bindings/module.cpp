// corehead._core: thin nanobind bindings. No logic here: argument checks that need
// Python types live in python/corehead, everything else in libcorehead.
//
// Results are typed classes with read-only fields (Record below: every one has a __repr__ and a
// to_dict() built from its field list, so a new field is one line here); arrays travel as numpy
// arrays in both directions without going through Python lists; every compute call releases
// the GIL. python/corehead/_core.pyi is generated from this file by nanobind's stubgen.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "corehead/engine.h"
#include "corehead/gguf_info.h"
#include "corehead/tokenizer.h"
#include "image/image.h"
#include "runtime/backend.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using corehead::Engine;

template <typename T, typename... Shape>
using Array = nb::ndarray<nb::numpy, T, Shape...>;
using ImageArray = nb::ndarray<const uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
using VideoArray = nb::ndarray<const uint8_t, nb::ndim<4>, nb::c_contig, nb::device::cpu>;
// One item of a multimodal prompt: an image array or a Video (frames + timing).
using Media = std::variant<ImageArray, corehead::Image>;
using RelevanceArray = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using KVHeads = std::vector<std::pair<int32_t, int32_t>>;

// Runs f with the GIL released (f must not touch Python objects).
template <typename F>
auto nogil(F&& f) -> decltype(f()) {
    nb::gil_scoped_release release;
    return f();
}

// Moves a vector into a numpy array without copying: a capsule owns the buffer.
template <typename T, typename... Shape>
Array<T, Shape...> owned(std::vector<T>&& v, std::initializer_list<size_t> shape) {
    auto* heap = new std::vector<T>(std::move(v));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
    return Array<T, Shape...>(heap->data(), shape, owner);
}

// A numpy view of a vector held by a bound object (`holder`), which the array keeps alive.
template <typename T, typename... Shape, typename Holder>
Array<T, Shape...> view(const Holder& holder, const std::vector<T>& v, std::initializer_list<size_t> shape) {
    return Array<T, Shape...>(const_cast<T*>(v.data()), shape, nb::find(holder));
}

// One read-only field of a bound struct, named as the C++ member (FIELD(TextInfo, n_layer)).
template <typename T, typename M>
struct Field {
    const char* name;
    M T::*member;
};
template <typename T, typename M>
Field<T, M> field_of(const char* name, M T::*member) {
    return {name, member};
}
#define FIELD(T, member) field_of(#member, &T::member)

// A bound struct: read-only fields (or properties) in a list that __repr__ and to_dict() walk.
template <typename T>
class Record {
public:
    Record(nb::handle scope, const char* name, const char* doc) : cls_(scope, name, doc), name_(name) {}

    template <typename... M>
    Record& fields(Field<T, M>... f) {
        (cls_.def_ro(f.name, f.member), ...);
        (fields_.push_back(f.name), ...);
        return *this;
    }
    template <typename Getter>
    Record& property(const char* name, Getter&& get, const char* doc) {
        cls_.def_prop_ro(name, std::forward<Getter>(get), doc);
        fields_.push_back(name);
        return *this;
    }
    // Adds to_dict() and __repr__ over the fields declared so far.
    nb::class_<T>& done() {
        cls_.def("to_dict", [fields = fields_](const T& self) {
            nb::handle h = nb::find(self);
            nb::typed<nb::dict, nb::str, nb::object> d;
            for (const char* f : fields) d[f] = nb::getattr(h, f);
            return d;
        }, "The fields as a new dict (field name -> value), in declaration order.");
        // Read access by name as well (record["n_vocab"], dict(record)), for callers written
        // against the dicts these classes replace.
        cls_.def("keys", [fields = fields_](const T&) {
            return std::vector<std::string>(fields.begin(), fields.end());
        }, "The field names, in declaration order.");
        cls_.def("__getitem__", [fields = fields_](const T& self, const std::string& key) {
            for (const char* f : fields) {
                if (key == f) return nb::getattr(nb::find(self), f);
            }
            throw nb::key_error(key.c_str());
        }, "key"_a, "The field named key (KeyError for other names).");
        cls_.def("__repr__", [fields = fields_, name = name_](const T& self) {
            nb::handle h = nb::find(self);
            std::string s = std::string(name) + "(";
            for (size_t i = 0; i < fields.size(); ++i) {
                s += (i ? ", " : "") + std::string(fields[i]) + "=" + nb::repr(nb::getattr(h, fields[i])).c_str();
            }
            return s + ")";
        }, "Every field, as ClassName(field=value, ...).");
        return cls_;
    }

private:
    nb::class_<T> cls_;
    const char* name_;
    std::vector<const char*> fields_;
};

// An (H, W, 3) uint8 array (python/corehead/images.py makes one from paths / PIL / arrays).
corehead::Image to_image(const ImageArray& a) {
    if (a.shape(2) != 3) throw corehead::InputError("an image must be an (H, W, 3) RGB uint8 array");
    corehead::Image img;
    img.height = static_cast<int64_t>(a.shape(0));
    img.width = static_cast<int64_t>(a.shape(1));
    img.rgb.assign(a.data(), a.data() + a.size());
    return img;
}

std::vector<corehead::Image> to_images(const std::vector<Media>& media) {
    std::vector<corehead::Image> out;
    for (const Media& m : media) {
        if (const auto* a = std::get_if<ImageArray>(&m)) {
            out.push_back(to_image(*a));
        } else {
            out.push_back(std::get<corehead::Image>(m));
        }
    }
    return out;
}

// A (T, H, W, 3) uint8 clip (python/corehead/videos.py makes one from paths / PIL lists / arrays).
corehead::Image to_video(const VideoArray& a, const std::vector<double>& timestamps, double fps) {
    if (a.shape(3) != 3) throw corehead::InputError("a video must be a (T, H, W, 3) RGB uint8 array");
    corehead::Image v;
    v.n_frames = static_cast<int64_t>(a.shape(0));
    v.height = static_cast<int64_t>(a.shape(1));
    v.width = static_cast<int64_t>(a.shape(2));
    v.rgb.assign(a.data(), a.data() + a.size());
    v.timestamps = timestamps;
    v.fps = fps;
    return v;
}

// Relevance weights [n_regions, n_tokens] as the engine takes them (None: no regions).
struct Relevance {
    std::vector<float> weights;
    int64_t n_regions = 0;
};
Relevance to_relevance(const std::optional<RelevanceArray>& r) {
    if (!r) return {};
    return nogil([&] { return Relevance{{r->data(), r->data() + r->size()}, static_cast<int64_t>(r->shape(0))}; });
}

// Logits rows as [n_rows, n_vocab] (all positions) or [n_vocab].
Array<float> logits_array(const Engine& e, std::vector<float>&& out, bool all_positions) {
    const size_t n_vocab = static_cast<size_t>(e.text_info().n_vocab);
    if (all_positions) return owned(std::move(out), {out.size() / n_vocab, n_vocab});
    return owned(std::move(out), {n_vocab});
}

// [n_layer][n_head * head_dim] sums as one float64 array, with the position count.
std::tuple<Array<double, nb::ndim<2>>, int64_t> sums_array(std::vector<std::vector<double>>&& sums, int64_t n) {
    const size_t rows = sums.size(), cols = rows ? sums[0].size() : 0;
    std::vector<double> flat;
    flat.reserve(rows * cols);
    for (const auto& r : sums) flat.insert(flat.end(), r.begin(), r.end());
    return {owned<double, nb::ndim<2>>(std::move(flat), {rows, cols}), n};
}

// Calls a Python callable per generated token, with the GIL re-acquired; a Python exception
// (e.g. KeyboardInterrupt) stops generation. None -> no callback.
using OnToken = std::optional<nb::typed<nb::callable, bool(int)>>;
corehead::TokenCallback token_callback(const OnToken& on_token) {
    if (!on_token) return nullptr;
    return [&on_token](int32_t tok) {
        nb::gil_scoped_acquire gil;
        return nb::cast<bool>((*on_token)(tok));
    };
}

nb::bytes as_bytes(const std::string& s) { return nb::bytes(s.data(), s.size()); }

corehead::Resample resample(const std::string& filter) {
    if (filter == "bilinear") return corehead::Resample::Bilinear;
    if (filter == "bicubic") return corehead::Resample::Bicubic;
    if (filter == "lanczos") return corehead::Resample::Lanczos;
    throw corehead::InputError("filter must be 'bilinear', 'bicubic' or 'lanczos'");
}

void bind_records(nb::module_& m) {
    using namespace corehead;
    Record<TextInfo>(m, "TextInfo",
                     "Facts about a language-model GGUF (inspect_model, Engine.text_info): arch = general.architecture, "
                     "file_type e.g. 'Q4_K_M', n_head / n_head_kv = query / KV heads per layer, n_params = elements of "
                     "all tensors, vocab_only = a tokenizer-only file, tokenizer / tokenizer_pre = tokenizer.ggml.model "
                     "/ .pre, n_tokens = tokens in the tokenizer, n_deepstack = layers that add DeepStack visual "
                     "features (qwen3vl), n_expert / n_expert_used = experts per layer / routed per token (MoE; 0 = "
                     "dense), attention_layers = the layers with attention heads (all but a hybrid model's "
                     "Gated DeltaNet layers, qwen35), recurrent_state_bytes = those layers' state per sequence, "
                     "deltanet_value_heads = value heads per Gated DeltaNet layer (0 without any), "
                     "layer_head_dims = each layer's head size (head_dim: the global layers'), "
                     "kv_source_layers = the layer whose K/V each layer attends over (KV sharing, gemma4: a layer "
                     "reading another's holds no KV cache).")
        .fields(FIELD(TextInfo, path), FIELD(TextInfo, arch), FIELD(TextInfo, name), FIELD(TextInfo, file_type))
        .fields(FIELD(TextInfo, n_layer), FIELD(TextInfo, n_head), FIELD(TextInfo, n_head_kv), FIELD(TextInfo, n_embd),
                FIELD(TextInfo, n_ff), FIELD(TextInfo, head_dim), FIELD(TextInfo, n_vocab), FIELD(TextInfo, n_ctx_train))
        .fields(FIELD(TextInfo, layer_head_dims), FIELD(TextInfo, kv_source_layers))
        .fields(FIELD(TextInfo, n_deepstack), FIELD(TextInfo, n_expert), FIELD(TextInfo, n_expert_used),
                FIELD(TextInfo, attention_layers), FIELD(TextInfo, recurrent_state_bytes),
                FIELD(TextInfo, deltanet_value_heads))
        .fields(FIELD(TextInfo, n_tensors), FIELD(TextInfo, n_params), FIELD(TextInfo, file_size))
        .fields(FIELD(TextInfo, vocab_only), FIELD(TextInfo, tokenizer), FIELD(TextInfo, tokenizer_pre),
                FIELD(TextInfo, n_tokens))
        .done();
    Record<VisionInfo>(m, "VisionInfo",
                       "Facts about an mmproj GGUF (inspect_mmproj, Engine.vision_info): projector = clip.projector_type, "
                       "image_size = side of the square input the encoder was trained on, n_out = embedding size the "
                       "projector produces, n_deepstack = DeepStack slices the projector emits per visual token after "
                       "the main embedding (qwen3vl_merger; encode_image then returns n_out * (1 + n_deepstack) "
                       "columns).")
        .fields(FIELD(VisionInfo, path), FIELD(VisionInfo, projector), FIELD(VisionInfo, name),
                FIELD(VisionInfo, file_type), FIELD(VisionInfo, image_size), FIELD(VisionInfo, patch_size))
        .fields(FIELD(VisionInfo, n_embd), FIELD(VisionInfo, n_ff), FIELD(VisionInfo, n_layer), FIELD(VisionInfo, n_head),
                FIELD(VisionInfo, n_out), FIELD(VisionInfo, n_deepstack))
        .fields(FIELD(VisionInfo, n_tensors), FIELD(VisionInfo, n_params), FIELD(VisionInfo, file_size))
        .done();
    Record<GgufTensorInfo>(m, "GgufTensorInfo",
                           "One tensor of a GGUF file: type = ggml type name ('q4_K', 'f16', ...), shape in ggml order "
                           "(ne[0] first), offset from the start of the tensor-data region, n_bytes of data.")
        .fields(FIELD(GgufTensorInfo, name), FIELD(GgufTensorInfo, type), FIELD(GgufTensorInfo, shape),
                FIELD(GgufTensorInfo, offset), FIELD(GgufTensorInfo, n_bytes))
        .done();
    Record<GgufSummary>(m, "GgufSummary",
                        "The layout of a GGUF file from its header (gguf_summary): the tensor-data region starts at "
                        "data_offset and holds data_size bytes (what the engine loads as weights); tensors in file order.")
        .fields(FIELD(GgufSummary, path), FIELD(GgufSummary, version), FIELD(GgufSummary, file_size),
                FIELD(GgufSummary, alignment), FIELD(GgufSummary, data_offset), FIELD(GgufSummary, data_size))
        .fields(FIELD(GgufSummary, tensors))
        .done();
    Record<VisionInput>(m, "VisionInput",
                        "The largest single vision-encoder input of an mmproj (largest_vision_input): width x height "
                        "pixels, n_patches = encoder sequence length (a class token included).")
        .fields(FIELD(VisionInput, width), FIELD(VisionInput, height), FIELD(VisionInput, n_patches))
        .done();
    Record<KVStats>(m, "KVStats",
                    "What the KV cache holds now (Engine.kv_stats). The full part holds every token for the CoRe KV "
                    "heads (all KV heads when dense), the compact part compact_tokens slots per other KV head; *_bytes "
                    "count the tokens in use, *_allocated the backend buffers; *_kv_heads are per layer.")
        .fields(FIELD(KVStats, sparse), FIELD(KVStats, n_tokens), FIELD(KVStats, compact_tokens))
        .fields(FIELD(KVStats, full_bytes), FIELD(KVStats, compact_bytes), FIELD(KVStats, full_allocated),
                FIELD(KVStats, compact_allocated), FIELD(KVStats, core_kv_heads), FIELD(KVStats, other_kv_heads))
        .done();
    using Stats = Engine::ImageCacheStats;
    Record<Stats>(m, "ImageCacheStats",
                  "The image-embedding cache (Engine.image_cache_stats): bytes held, limit (0: disabled), cached "
                  "views, and lookups served (hits) or encoded (misses).")
        .fields(FIELD(Stats, bytes), FIELD(Stats, limit), FIELD(Stats, entries), FIELD(Stats, hits), FIELD(Stats, misses))
        .done();

    Record<SparseOptions>(m, "SparseOptions", "The CoRe-sparse KV cache (docs/architecture.md §6): the core_kv_heads, "
                          "(layer, KV head) pairs, keep every token; visual_keep: 'snapkv', 'first' or 'last'.")
        .fields(FIELD(SparseOptions, core_kv_heads), FIELD(SparseOptions, sink), FIELD(SparseOptions, visual_budget),
                FIELD(SparseOptions, visual_keep))
        .done()
        .def("__init__", [](SparseOptions* o, KVHeads core_kv_heads, int64_t sink, int64_t visual_budget,
                            std::string visual_keep) {
            new (o) SparseOptions{std::move(core_kv_heads), sink, visual_budget, std::move(visual_keep)};
        }, nb::kw_only(), "core_kv_heads"_a, "sink"_a = SparseOptions{}.sink,
           "visual_budget"_a = SparseOptions{}.visual_budget, "visual_keep"_a = SparseOptions{}.visual_keep,
           "The other KV heads keep the first sink tokens, the text and visual_budget visual tokens per image "
           "(the engine validates the options).");

    const GenerateOptions gen;  // the defaults
    Record<GenerateOptions>(m, "GenerateOptions", "Sampling and stopping for Engine.generate*: temperature 0 = greedy, "
                            "top_k 0 = all tokens, stop_at_eog = stop at the model's end-of-generation tokens.")
        .fields(FIELD(GenerateOptions, max_tokens), FIELD(GenerateOptions, temperature), FIELD(GenerateOptions, top_k),
                FIELD(GenerateOptions, top_p), FIELD(GenerateOptions, min_p))
        .fields(FIELD(GenerateOptions, repeat_penalty), FIELD(GenerateOptions, repeat_last_n),
                FIELD(GenerateOptions, seed), FIELD(GenerateOptions, stop_at_eog))
        .done()
        .def("__init__", [](GenerateOptions* o, int64_t max_tokens, float temperature, int32_t top_k, float top_p,
                            float min_p, float repeat_penalty, int32_t repeat_last_n, uint64_t seed, bool stop_at_eog) {
            new (o) GenerateOptions{max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, repeat_last_n, seed,
                                    stop_at_eog};
        }, nb::kw_only(), "max_tokens"_a = gen.max_tokens, "temperature"_a = gen.temperature, "top_k"_a = gen.top_k,
           "top_p"_a = gen.top_p, "min_p"_a = gen.min_p, "repeat_penalty"_a = gen.repeat_penalty,
           "repeat_last_n"_a = gen.repeat_last_n, "seed"_a = gen.seed, "stop_at_eog"_a = gen.stop_at_eog,
           "Generation options; every argument is a keyword.");

    nb::class_<corehead::Image>(m, "Video", "A video clip for a multimodal prompt: (T, H, W, 3) uint8 frames taken "
                                            "at timestamps (seconds) by a sampler running at fps.")
        .def("__init__", [](corehead::Image* self, const VideoArray& frames, const std::vector<double>& timestamps,
                            double fps) { new (self) corehead::Image(to_video(frames, timestamps, fps)); },
             "frames"_a, "timestamps"_a, "fps"_a)
        .def_ro("n_frames", &corehead::Image::n_frames)
        .def_ro("width", &corehead::Image::width)
        .def_ro("height", &corehead::Image::height)
        .def_ro("fps", &corehead::Image::fps)
        .def_ro("timestamps", &corehead::Image::timestamps);

    Record<MultimodalTokens>(m, "MultimodalTokens", "A prompt with images as token ids (Engine.tokenize_images).")
        .property("ids", [](const MultimodalTokens& t) { return view<int32_t, nb::ndim<1>>(t, t.ids, {t.ids.size()}); },
                  "int32 [n_tokens]: the image placeholder id at the visual positions.")
        .property("visual_positions", [](const MultimodalTokens& t) {
            return view<int32_t, nb::ndim<1>>(t, t.visual_positions, {t.visual_positions.size()});
        }, "int32 [n_visual]: indices into ids, in context order.")
        .property("rope_positions", [](const MultimodalTokens& t) {
            return view<int32_t, nb::ndim<2>>(t, t.rope_positions, {t.rope_positions.empty() ? size_t(0) : size_t(3), t.ids.size()});
        }, "int32 [3, n_tokens]: the (t, h, w) M-RoPE positions of every token (Qwen-VL); [0, n_tokens] otherwise.")
        .done();

    // rows / masses: [layer][head][position][key or region] views of the taps' buffers.
    using Taps4 = std::optional<Array<float, nb::ndim<4>>>;
    auto taps4 = [](const AttentionTaps& t, const std::vector<float>& v, int64_t last) -> Taps4 {
        if (v.empty()) return std::nullopt;
        return view<float, nb::ndim<4>>(t, v, {t.layers.size(), size_t(t.n_head), t.positions.size(), size_t(last)});
    };
    Record<AttentionTaps>(m, "AttentionTaps",
                          "Attention probabilities read by the taps (docs/architecture.md §4) for the selected layers "
                          "and query positions (ascending), n_kv keys (tokens in the context), n_regions relevance "
                          "regions (0: none asked).")
        .fields(FIELD(AttentionTaps, layers), FIELD(AttentionTaps, positions), FIELD(AttentionTaps, n_head),
                FIELD(AttentionTaps, n_kv), FIELD(AttentionTaps, n_regions))
        .property("rows", [taps4](const AttentionTaps& t) { return taps4(t, t.rows, t.n_kv); },
                  "float32 [n_layer, n_head, n_pos, n_kv] full rows, or None unless asked.")
        .property("masses", [taps4](const AttentionTaps& t) { return taps4(t, t.masses, t.n_regions); },
                  "float32 [n_layer, n_head, n_pos, n_regions] masses on the relevance regions, or None.")
        .done();
}

void bind_tokenizer(nb::module_& m) {
    using corehead::Tokenizer;
    nb::class_<Tokenizer>(m, "Tokenizer", "A GGUF file's tokenizer (ids match llama.cpp's).")
        .def_static("from_file", [](const std::string& path) {
            return nogil([&] { return Tokenizer::from_file(path); });
        }, "path"_a, "The tokenizer of any GGUF file (vocabulary-only files included).")
        .def("tokenize", [](const Tokenizer& t, const std::string& text, bool add_special, bool parse_special) {
            return nogil([&] { return t.tokenize(text, add_special, parse_special); });
        }, "text"_a, "add_special"_a = true, "parse_special"_a = true,
           "Token ids of text; add_special adds BOS/EOS as the file says, parse_special maps special-token texts.")
        .def("detokenize", [](const Tokenizer& t, const std::vector<int32_t>& ids, bool remove_special,
                              bool unparse_special) {
            return as_bytes(t.detokenize(ids, remove_special, unparse_special));
        }, "ids"_a, "remove_special"_a = false, "unparse_special"_a = true,
           "The UTF-8 bytes of ids (may end in a partial character).")
        .def("token_to_piece", [](const Tokenizer& t, int32_t id, bool unparse_special) {
            return as_bytes(t.token_to_piece(id, unparse_special));
        }, "id"_a, "unparse_special"_a = true, "Raw bytes one token contributes to the text.")
        .def("token_text", &Tokenizer::token_text, "id"_a, "The vocabulary entry of a token.")
        .def("find", &Tokenizer::find, "text"_a, "Id of the vocabulary entry spelled exactly text, or -1.")
        .def("is_eog", &Tokenizer::is_eog, "id"_a, "Whether id ends generation.")
        .def("is_control", &Tokenizer::is_control, "id"_a, "Whether id is a control token.")
        .def_prop_ro("n_tokens", &Tokenizer::n_tokens, "Tokens in the vocabulary.")
        .def_prop_ro("bos", &Tokenizer::bos, "Beginning-of-sequence id, -1 when none.")
        .def_prop_ro("eos", &Tokenizer::eos, "End-of-sequence id, -1 when none.")
        .def_prop_ro("type", &Tokenizer::type_name, "tokenizer.ggml.model.")
        .def_prop_ro("pre", &Tokenizer::pre_name, "tokenizer.ggml.pre.")
        .def_prop_ro("eog_tokens", &Tokenizer::eog_tokens, "End-of-generation ids.");
}

void bind_engine(nb::module_& m) {
    const char* marker = corehead::kDefaultImageMarker;
    nb::class_<Engine>(m, "Engine", "A language model (and optional vision projector) loaded in ggml.")
        .def("__init__", [](Engine* self, const std::string& model, const std::string& mmproj, int n_threads,
                            int64_t n_ctx, const std::string& backend, const std::string& kv_type, int64_t n_batch,
                            const std::optional<corehead::SparseOptions>& sparse) {
            corehead::EngineOptions o;
            o.model = model;
            o.mmproj = mmproj;
            o.n_threads = n_threads;
            o.n_ctx = n_ctx;
            o.backend = backend;
            o.kv_type = kv_type;
            o.n_batch = n_batch;
            o.sparse = sparse;
            nogil([&] { new (self) Engine(o); });
            // Ctrl-C: Python's signal handlers run when we briefly take the GIL between passes.
            self->set_interrupt_check([] {
                nb::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw nb::python_error();
            });
        }, "model"_a, nb::kw_only(), "mmproj"_a = "", "n_threads"_a = 0, "n_ctx"_a = 4096, "backend"_a = "auto",
           "kv_type"_a = "auto", "n_batch"_a = 512, "sparse"_a = nb::none(),
           "Loads the weights (mmproj '' = text only; n_threads 0 = automatic; sparse: start CoRe-sparse).")
        .def("set_sparse", [](Engine& e, const std::optional<corehead::SparseOptions>& o) {
            nogil([&] { e.set_sparse(o); });
        }, "options"_a.none(), "Switches to the CoRe-sparse cache (options) or back to the dense one (None).")
        .def_prop_ro("sparse_options", [](const Engine& e) { return std::optional(e.sparse_options()); },
                     "A copy of the CoRe-sparse options in force, None when dense.")
        .def("kv_stats", &Engine::kv_stats, "What the KV cache holds now.")
        .def_prop_ro("text_info", [](const Engine& e) { return e.text_info(); }, "Facts about the model file.")
        .def_prop_ro("vision_info", [](const Engine& e) {
            const corehead::VisionInfo* v = e.vision_info();
            return v ? std::optional<corehead::VisionInfo>(*v) : std::nullopt;
        }, "Facts about the mmproj file, None without one.")
        .def_prop_ro("backend", &Engine::backend_name, "The backend in use ('cpu', 'cuda', 'metal').")
        .def_prop_ro("placement", &Engine::placement_nodes,
                     "Per part ('text', 'vision'): graph nodes each ggml backend ran in the last graph.")
        .def_prop_ro("cpu_fallback_ops", &Engine::cpu_fallback_ops,
                     "Per part: the ggml ops that ran on the CPU because the GPU backend lacks them.")
        .def_prop_ro("n_threads", &Engine::n_threads, "CPU threads.")
        .def_prop_ro("n_ctx", &Engine::n_ctx, "Context window in tokens.")
        .def_prop_ro("weight_bytes", &Engine::weight_bytes, "Text + vision weights held in backend memory.")
        .def_prop_ro("kv_bytes", &Engine::kv_bytes, "Bytes of the KV cache.")
        .def_prop_ro("n_past", &Engine::n_past, "Tokens in the current sequence.")
        .def_prop_ro("eog_tokens", &Engine::eog_tokens, "End-of-generation ids of the model's tokenizer.")
        .def("logits", [](Engine& e, const std::vector<int32_t>& tokens, bool all_positions) {
            return logits_array(e, nogil([&] { return e.logits(tokens, all_positions); }), all_positions);
        }, "tokens"_a, nb::kw_only(), "all_positions"_a = false,
           "Runs tokens from an empty context: float32 logits [n_vocab], or [n_tokens, n_vocab] for all positions.")
        .def("logits_at", [](Engine& e, const std::vector<int32_t>& tokens, const std::vector<int32_t>& rows) {
            return logits_array(e, nogil([&] { return e.logits_at(tokens, rows); }), true);
        }, "tokens"_a, "rows"_a,
           "Runs tokens from an empty context: float32 logits [len(rows), n_vocab] of the input positions rows "
           "(ascending, distinct); only those rows are copied out.")
        .def("logits_images", [](Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                 bool all_positions, const std::string& marker) {
            const auto imgs = to_images(images);
            return logits_array(e, nogil([&] { return e.logits(prompt, imgs, all_positions, marker); }), all_positions);
        }, "prompt"_a, "images"_a, nb::kw_only(), "all_positions"_a = false, "marker"_a = marker,
           "logits() of a prompt with images (one per marker; without markers they go first).")
        .def("logits_at_images", [](Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                    const std::vector<int32_t>& rows, const std::string& marker) {
            const auto imgs = to_images(images);
            return logits_array(e, nogil([&] { return e.logits_at(prompt, imgs, rows, marker); }), true);
        }, "prompt"_a, "images"_a, "rows"_a, nb::kw_only(), "marker"_a = marker,
           "logits_at() of a prompt with images (rows are positions of the expanded prompt).")
        .def("append", [](Engine& e, const std::vector<int32_t>& tokens, bool all_positions) {
            return logits_array(e, nogil([&] { return e.append(tokens, all_positions); }), all_positions);
        }, "tokens"_a, nb::kw_only(), "all_positions"_a = false,
           "Continues the current sequence with tokens; float32 logits [n_vocab] of the last one, or "
           "[n_tokens, n_vocab] of every appended one.")
        .def("append_branches", [](Engine& e, const std::vector<std::pair<int64_t, std::vector<int32_t>>>& branches) {
            return logits_array(e, nogil([&] { return e.append_branches(branches); }), true);
        }, "branches"_a,
           "Continuations (prefix length, tokens) of the current sequence in one forward pass, each seeing only "
           "its prefix and itself; float32 logits [total tokens, n_vocab], branches in order. The cache keeps "
           "its length.")
        .def("truncate", &Engine::truncate, "n"_a,
             "Rolls the current sequence back to its first n positions (after the prompt's images); the next "
             "append continues at n.")
        .def("generate", [](Engine& e, const std::vector<int32_t>& prompt, const corehead::GenerateOptions& options,
                            const OnToken& on_token) {
            const auto cb = token_callback(on_token);
            return nogil([&] { return e.generate(prompt, options, cb); });
        }, "prompt"_a, nb::kw_only(), "options"_a, "on_token"_a = nb::none(),
           "Generated ids after prompt; on_token(id) -> bool is called per token (False stops).")
        .def("generate_images", [](Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                   const corehead::GenerateOptions& options, const OnToken& on_token,
                                   const std::string& marker) {
            const auto imgs = to_images(images);
            const auto cb = token_callback(on_token);
            return nogil([&] { return e.generate(prompt, imgs, options, cb, marker); });
        }, "prompt"_a, "images"_a, nb::kw_only(), "options"_a, "on_token"_a = nb::none(),
           "marker"_a = marker, "generate() after a prompt with images.")
        .def("attention", [](Engine& e, const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                             const std::vector<int32_t>& layers, bool full_rows,
                             const std::optional<RelevanceArray>& relevance) {
            const Relevance r = to_relevance(relevance);
            return nogil([&] { return e.attention(tokens, positions, layers, full_rows, r.weights, r.n_regions); });
        }, "tokens"_a, nb::kw_only(), "positions"_a, "layers"_a, "full_rows"_a = false, "relevance"_a = nb::none(),
           "Attention taps on query positions (negative: from the end) of layers (empty: all); full_rows "
           "returns the rows, relevance (float32 [n_regions, n_tokens]) their masses per region.")
        .def("attention_images", [](Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                    const std::vector<int32_t>& positions, const std::vector<int32_t>& layers,
                                    bool full_rows, const std::optional<RelevanceArray>& relevance,
                                    const std::string& marker) {
            const auto imgs = to_images(images);
            const Relevance r = to_relevance(relevance);
            return nogil([&] {
                return e.attention(prompt, imgs, marker, positions, layers, full_rows, r.weights, r.n_regions);
            });
        }, "prompt"_a, "images"_a, nb::kw_only(), "positions"_a, "layers"_a, "full_rows"_a = false,
           "relevance"_a = nb::none(), "marker"_a = marker,
           "attention() for a prompt with images (relevance over the expanded tokens).")
        .def("tokenize_images", [](const Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                   const std::string& marker) {
            const auto imgs = to_images(images);
            return nogil([&] { return e.tokenize(prompt, imgs, marker); });
        }, "prompt"_a, "images"_a, nb::kw_only(), "marker"_a = marker,
           "The token ids of a prompt with its images expanded, and the visual positions.")
        .def("encode_image", [](Engine& e, const ImageArray& image) {
            const auto img = to_image(image);
            auto out = nogil([&] { return e.encode_image(img); });
            const corehead::VisionInfo* vi = e.vision_info();
            const size_t width = static_cast<size_t>(vi ? vi->n_out * (1 + vi->n_deepstack) : e.text_info().n_embd);
            return owned<float, nb::ndim<2>>(std::move(out), {out.size() / width, width});
        }, "image"_a, "The projector output for one (H, W, 3) uint8 image: float32 [n_visual, n_embd], or "
                      "[n_visual, n_embd * (1 + n_deepstack)] with the DeepStack slices after the main embedding.")
        .def("preprocess_image", [](const Engine& e, const ImageArray& image) {
            const auto img = to_image(image);
            auto views = nogil([&] { return e.preprocess_image(img); });
            std::vector<Array<float, nb::ndim<3>>> out;
            for (auto& v : views) {
                out.push_back(owned<float, nb::ndim<3>>(std::move(v.pixels), {3, size_t(v.height), size_t(v.width)}));
            }
            return out;
        }, "image"_a, "The encoder inputs of an image: one float32 [3, H, W] array per view.")
        .def("visual_token_boxes", [](const Engine& e, const Media& image) {
            const auto img = to_images({image})[0];
            auto out = nogil([&] { return e.visual_token_boxes(img); });
            return owned<float, nb::ndim<2>>(std::move(out), {out.size() / 4, 4});
        }, "image"_a, "float32 [n_visual, 4]: the (x0, y0, x1, y1) pixels of the image (a Video: of its frames) each "
                      "visual token covers.")
        .def("visual_token_frames", [](const Engine& e, const Media& image) {
            const auto img = to_images({image})[0];
            auto out = nogil([&] { return e.visual_token_frames(img); });
            return owned<int32_t, nb::ndim<2>>(std::move(out), {out.size() / 2, 2});
        }, "image"_a, "int32 [n_visual, 2]: the first and last sampled frame each visual token of a Video shows, in "
                      "the order of visual_token_boxes ((-1, -1) for an image's tokens).")
        .def("set_image_cache_limit", &Engine::set_image_cache_limit, "bytes"_a,
             "Limits the image-embedding cache (0 disables it).")
        .def("clear_image_cache", &Engine::clear_image_cache, "Empties the image-embedding cache.")
        .def("set_progress", [](Engine& e, nb::object callback) {
            if (callback.is_none()) {
                e.set_progress_callback({});
                return;
            }
            // Shared so that copying the callback into each prefill's options (without the GIL)
            // never touches a Python reference count; the last owner releases it under the GIL.
            std::shared_ptr<nb::object> fn(new nb::object(std::move(callback)), [](nb::object* o) {
                nb::gil_scoped_acquire gil;
                delete o;
            });
            e.set_progress_callback([fn](const char* phase, int64_t done, int64_t total) {
                nb::gil_scoped_acquire gil;
                (*fn)(phase, done, total);  // a Python exception propagates as nb::python_error
            });
        }, nb::sig("def set_progress(self, callback: collections.abc.Callable[[str, int, int], None] | None) -> None"),
           "callback"_a.none(),
           "callback(phase, done, total) after each vision pass ('encode', images) and prefill forward pass "
           "('prefill', input positions) of a prompt; None removes it.")
        .def("image_cache_stats", &Engine::image_cache_stats, "The image-embedding cache's counters.")
        .def_prop_ro("tokenizer", [](const Engine& e) {
            const corehead::Tokenizer* t = e.tokenizer();
            return t ? std::optional<corehead::Tokenizer>(*t) : std::nullopt;  // a copy sharing the vocabulary
        }, "The model's tokenizer, None when the file carries none.")
        .def("set_head_interventions", [](Engine& e, const std::vector<std::tuple<int32_t, int32_t, std::string,
                                                                          std::vector<float>>>& interventions,
                                          const std::vector<int32_t>& knockout_keys,
                                          const std::vector<int32_t>& knockout_from,
                                          const std::vector<int32_t>& knockout_until,
                                          const std::string& knockout_queries) {
            std::vector<corehead::HeadIntervention> list;
            for (const auto& [layer, head, kind, mean] : interventions) list.push_back({layer, head, kind, mean});
            e.set_head_interventions(list, knockout_keys, knockout_from, knockout_until, knockout_queries);
        }, "interventions"_a, nb::kw_only(), "knockout_keys"_a = std::vector<int32_t>{},
           "knockout_from"_a = std::vector<int32_t>{}, "knockout_until"_a = std::vector<int32_t>{},
           "knockout_queries"_a = "after",
           "Replaces the head interventions, (layer, head, 'zero' | 'mean' | 'knockout', mean), of every later call.")
        .def("set_deltanet_ablation", &Engine::set_deltanet_ablation, "value_heads"_a,
             "Replaces the zeroed Gated DeltaNet value heads, (layer, value head) in transformers' numbering, of "
             "every later call (hybrid models; [] = none). Independent of set_head_interventions.")
        .def("head_output_sums", [](Engine& e, const std::vector<int32_t>& tokens) {
            int64_t n = 0;
            auto sums = nogil([&] { return e.head_output_sums(tokens, n); });
            return sums_array(std::move(sums), n);
        }, "tokens"_a, "Σ over the positions of each head's output: (float64 [n_layer, n_head * head_dim], n).")
        .def("head_output_sums_images", [](Engine& e, const std::string& prompt, const std::vector<Media>& images,
                                           const std::string& marker) {
            const auto imgs = to_images(images);
            int64_t n = 0;
            auto sums = nogil([&] { return e.head_output_sums(prompt, imgs, marker, n); });
            return sums_array(std::move(sums), n);
        }, "prompt"_a, "images"_a, nb::kw_only(), "marker"_a = marker, "head_output_sums() for a prompt with images.")
        .def("metadata_string", &Engine::metadata_string, "key"_a, "A string metadata value of the model file, or None.");
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "corehead native core (ggml engine)";

    // Exception mapping: ModelError subclasses ValueError; a missing file is FileNotFoundError.
    static nb::exception<corehead::ModelError> model_error(m, "ModelError", PyExc_ValueError);
    static nb::exception<corehead::ContextOverflow> ctx_error(m, "ContextOverflowError", PyExc_ValueError);
    nb::setattr(model_error, "__doc__",
                nb::str("A model / mmproj file is malformed, unsupported or inconsistent (a ValueError)."));
    nb::setattr(ctx_error, "__doc__", nb::str("The request does not fit in the context window (a ValueError)."));
    nb::register_exception_translator([](const std::exception_ptr& p, void*) {
        try {
            std::rethrow_exception(p);
        } catch (const corehead::FileNotFound& e) {
            PyErr_SetString(PyExc_FileNotFoundError, e.what());
        } catch (const corehead::ModelError& e) {
            PyErr_SetString(model_error.ptr(), e.what());
        } catch (const corehead::ContextOverflow& e) {
            PyErr_SetString(ctx_error.ptr(), e.what());
        } catch (const corehead::InputError& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const corehead::Error& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        }
    });

    bind_records(m);
    bind_tokenizer(m);
    bind_engine(m);

    m.def("inspect_model", [](const std::string& path) { return nogil([&] { return corehead::inspect_model(path); }); },
          "path"_a, "Validate a language-model GGUF without loading weights; returns its facts.");
    m.def("inspect_mmproj", [](const std::string& path) { return nogil([&] { return corehead::inspect_mmproj(path); }); },
          "path"_a, "Validate an mmproj GGUF without loading weights; returns its facts.");
    m.def("gguf_summary", [](const std::string& path) { return nogil([&] { return corehead::gguf_summary(path); }); },
          "path"_a, "The header of any GGUF file: the tensor-data region and every tensor's type and shape.");
    m.def("largest_vision_input", [](const std::string& path) {
        return nogil([&] { return corehead::largest_vision_input(path); });
    }, "path"_a, "The largest single encoder input (pixels, patches) an mmproj's preprocessing makes.");
    m.def("compiled_backends", &corehead::compiled_backends, "Backends compiled into this build.");
    m.def("system_info", [] {
        const corehead::SystemInfo s = corehead::system_info();
        nb::dict d;
        d["build"] = s.build;
        d["cpu_variant"] = s.cpu_variant;
        d["cpu_variant_path"] = s.cpu_variant_path;
        d["cpu_features"] = s.cpu_features;
        d["backends"] = s.backends;
        d["devices"] = s.devices;
        return d;
    }, "How ggml was built (native or portable), the CPU variant and features it runs, its backends and devices.");
    m.def("resize_image", [](const ImageArray& image, int64_t width, int64_t height, const std::string& filter) {
        const corehead::Resample f = resample(filter);
        const auto img = to_image(image);
        corehead::Image out = nogil([&] { return corehead::resize(img, width, height, f); });
        return owned<uint8_t, nb::ndim<3>>(std::move(out.rgb), {size_t(out.height), size_t(out.width), 3});
    }, "image"_a, "width"_a, "height"_a, "filter"_a, "Pillow-exact resampling of an (H, W, 3) uint8 image (for tests).");
    m.def("default_thread_count", &corehead::default_thread_count, "The default n_threads (physical cores).");
}
