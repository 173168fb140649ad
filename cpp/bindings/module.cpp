// corehead._core: thin nanobind bindings. No logic here: argument checks that need
// Python types live in python/corehead, everything else in libcorehead.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include "corehead/engine.h"
#include "corehead/tokenizer.h"
#include "image/image.h"
#include "runtime/backend.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

nb::dict to_dict(const corehead::TextInfo& i) {
    nb::dict d;
    d["path"] = i.path;
    d["arch"] = i.arch;
    d["name"] = i.name;
    d["file_type"] = i.file_type;
    d["n_layer"] = i.n_layer;
    d["n_head"] = i.n_head;
    d["n_head_kv"] = i.n_head_kv;
    d["n_embd"] = i.n_embd;
    d["n_ff"] = i.n_ff;
    d["head_dim"] = i.head_dim;
    d["n_vocab"] = i.n_vocab;
    d["n_ctx_train"] = i.n_ctx_train;
    d["n_tensors"] = i.n_tensors;
    d["n_params"] = i.n_params;
    d["file_size"] = i.file_size;
    d["vocab_only"] = i.vocab_only;
    d["tokenizer"] = i.tokenizer;
    d["tokenizer_pre"] = i.tokenizer_pre;
    d["n_tokens"] = i.n_tokens;
    return d;
}

nb::dict to_dict(const corehead::VisionInfo& i) {
    nb::dict d;
    d["path"] = i.path;
    d["projector"] = i.projector;
    d["name"] = i.name;
    d["file_type"] = i.file_type;
    d["image_size"] = i.image_size;
    d["patch_size"] = i.patch_size;
    d["n_embd"] = i.n_embd;
    d["n_ff"] = i.n_ff;
    d["n_layer"] = i.n_layer;
    d["n_head"] = i.n_head;
    d["n_out"] = i.n_out;
    d["n_tensors"] = i.n_tensors;
    d["n_params"] = i.n_params;
    d["file_size"] = i.file_size;
    return d;
}

// Moves a vector into a numpy array without copying.
nb::ndarray<nb::numpy, float> to_numpy(std::vector<float>&& v, std::initializer_list<size_t> shape) {
    auto* heap = new std::vector<float>(std::move(v));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<float>*>(p); });
    return nb::ndarray<nb::numpy, float>(heap->data(), shape.size(), shape.begin(), owner);
}

using ImageArray = nb::ndarray<const uint8_t, nb::ndim<3>, nb::c_contig, nb::device::cpu>;

// An (H, W, 3) uint8 array (python/corehead/images.py makes one from paths / PIL / arrays).
corehead::Image to_image(const ImageArray& a) {
    if (a.shape(2) != 3) throw corehead::InputError("an image must be an (H, W, 3) RGB uint8 array");
    corehead::Image img;
    img.height = static_cast<int64_t>(a.shape(0));
    img.width = static_cast<int64_t>(a.shape(1));
    img.rgb.assign(a.data(), a.data() + a.size());
    return img;
}

std::vector<corehead::Image> to_images(const std::vector<ImageArray>& arrays) {
    std::vector<corehead::Image> out;
    for (const auto& a : arrays) out.push_back(to_image(a));
    return out;
}

nb::ndarray<nb::numpy, int32_t> to_numpy_i32(std::vector<int32_t>&& v) {
    auto* heap = new std::vector<int32_t>(std::move(v));
    nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<int32_t>*>(p); });
    size_t shape[1] = {heap->size()};
    return nb::ndarray<nb::numpy, int32_t>(heap->data(), 1, shape, owner);
}

corehead::GenerateOptions generate_options(int64_t max_tokens, float temperature, int32_t top_k, float top_p, float min_p,
                                           float repeat_penalty, int32_t repeat_last_n, uint64_t seed, bool stop_at_eog) {
    corehead::GenerateOptions o;
    o.max_tokens = max_tokens;
    o.temperature = temperature;
    o.top_k = top_k;
    o.top_p = top_p;
    o.min_p = min_p;
    o.repeat_penalty = repeat_penalty;
    o.repeat_last_n = repeat_last_n;
    o.seed = seed;
    o.stop_at_eog = stop_at_eog;
    return o;
}

// Calls a Python callable per generated token, with the GIL re-acquired; a Python exception
// (e.g. KeyboardInterrupt) stops generation. None -> no callback.
corehead::TokenCallback token_callback(const nb::object& on_token) {
    if (on_token.is_none()) return nullptr;
    return [&on_token](int32_t tok) {
        nb::gil_scoped_acquire gil;
        return nb::cast<bool>(on_token(tok));
    };
}

// Tap results as a dict of numpy arrays: rows [L, H, P, n_kv] and/or masses [L, H, P, n_regions].
nb::dict taps_dict(corehead::AttentionTaps&& t, bool full_rows, int64_t n_regions) {
    const size_t L = t.layers.size(), H = t.n_head, P = t.positions.size();
    nb::dict d;
    d["layers"] = t.layers;
    d["positions"] = t.positions;
    if (full_rows) d["rows"] = to_numpy(std::move(t.rows), {L, H, P, static_cast<size_t>(t.n_kv)});
    if (n_regions > 0) d["masses"] = to_numpy(std::move(t.masses), {L, H, P, static_cast<size_t>(n_regions)});
    return d;
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "corehead native core (ggml engine)";

    // Exception mapping: ModelError subclasses ValueError; a missing file is FileNotFoundError.
    static nb::exception<corehead::ModelError> model_error(m, "ModelError", PyExc_ValueError);
    static nb::exception<corehead::ContextOverflow> ctx_error(m, "ContextOverflowError", PyExc_ValueError);
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

    m.def("inspect_model", [](const std::string& path) {
        corehead::TextInfo info;
        {
            nb::gil_scoped_release nogil;
            info = corehead::inspect_model(path);
        }
        return to_dict(info);
    }, "path"_a, "Validate a language-model GGUF without loading weights; returns its facts.");
    m.def("inspect_mmproj", [](const std::string& path) {
        corehead::VisionInfo info;
        {
            nb::gil_scoped_release nogil;
            info = corehead::inspect_mmproj(path);
        }
        return to_dict(info);
    }, "path"_a, "Validate an mmproj GGUF without loading weights; returns its facts.");
    m.def("compiled_backends", &corehead::compiled_backends);
    m.def("resize_image", [](const ImageArray& a, int64_t width, int64_t height, const std::string& filter) {
        corehead::Resample f = filter == "bilinear" ? corehead::Resample::Bilinear
                               : filter == "bicubic" ? corehead::Resample::Bicubic
                               : filter == "lanczos" ? corehead::Resample::Lanczos
                               : throw corehead::InputError("filter must be 'bilinear', 'bicubic' or 'lanczos'");
        corehead::Image img = to_image(a);
        corehead::Image out;
        {
            nb::gil_scoped_release nogil;
            out = corehead::resize(img, width, height, f);
        }
        auto* heap = new std::vector<uint8_t>(std::move(out.rgb));
        nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
        size_t shape[3] = {static_cast<size_t>(out.height), static_cast<size_t>(out.width), 3};
        return nb::ndarray<nb::numpy, uint8_t>(heap->data(), 3, shape, owner);
    }, "image"_a, "width"_a, "height"_a, "filter"_a, "Pillow-exact resampling of an (H, W, 3) uint8 image (for tests).");
    m.def("default_thread_count", &corehead::default_thread_count);

    nb::class_<corehead::Tokenizer>(m, "Tokenizer")
        .def_static("from_file", [](const std::string& path) {
            nb::gil_scoped_release nogil;
            return corehead::Tokenizer::from_file(path);
        }, "path"_a)
        .def("tokenize", [](const corehead::Tokenizer& t, const std::string& text, bool add_special, bool parse_special) {
            nb::gil_scoped_release nogil;
            return t.tokenize(text, add_special, parse_special);
        }, "text"_a, "add_special"_a = true, "parse_special"_a = true)
        .def("detokenize", [](const corehead::Tokenizer& t, const std::vector<int32_t>& ids, bool remove_special,
                              bool unparse_special) {
            std::string s = t.detokenize(ids, remove_special, unparse_special);
            return nb::bytes(s.data(), s.size());
        }, "ids"_a, "remove_special"_a = false, "unparse_special"_a = true)
        .def("token_to_piece", [](const corehead::Tokenizer& t, int32_t id, bool unparse_special) {
            std::string s = t.token_to_piece(id, unparse_special);
            return nb::bytes(s.data(), s.size());
        }, "id"_a, "unparse_special"_a = true)
        .def("token_text", &corehead::Tokenizer::token_text, "id"_a)
        .def("find", &corehead::Tokenizer::find, "text"_a)
        .def("is_eog", &corehead::Tokenizer::is_eog, "id"_a)
        .def("is_control", &corehead::Tokenizer::is_control, "id"_a)
        .def_prop_ro("n_tokens", &corehead::Tokenizer::n_tokens)
        .def_prop_ro("bos", &corehead::Tokenizer::bos)
        .def_prop_ro("eos", &corehead::Tokenizer::eos)
        .def_prop_ro("type", &corehead::Tokenizer::type_name)
        .def_prop_ro("pre", &corehead::Tokenizer::pre_name)
        .def_prop_ro("eog_tokens", &corehead::Tokenizer::eog_tokens);

    nb::class_<corehead::Engine>(m, "Engine")
        .def("__init__", [](corehead::Engine* self, const std::string& model, const std::string& mmproj, int n_threads,
                            int64_t n_ctx, const std::string& backend, const std::string& kv_type, int64_t n_batch,
                            const std::optional<std::vector<std::pair<int32_t, int32_t>>>& core_kv_heads, int64_t sink,
                            int64_t visual_budget, const std::string& visual_keep) {
            corehead::EngineOptions o;
            if (core_kv_heads) o.sparse = corehead::SparseOptions{*core_kv_heads, sink, visual_budget, visual_keep};
            o.model = model;
            o.mmproj = mmproj;
            o.n_threads = n_threads;
            o.n_ctx = n_ctx;
            o.backend = backend;
            o.kv_type = kv_type;
            o.n_batch = n_batch;
            {
                nb::gil_scoped_release nogil;
                new (self) corehead::Engine(o);
            }
            // Ctrl-C: Python's signal handlers run when we briefly take the GIL between passes.
            self->set_interrupt_check([] {
                nb::gil_scoped_acquire gil;
                if (PyErr_CheckSignals() != 0) throw nb::python_error();
            });
        }, "model"_a, "mmproj"_a = "", "n_threads"_a = 0, "n_ctx"_a = 4096, "backend"_a = "auto",
             "kv_type"_a = "auto", "n_batch"_a = 512, "core_kv_heads"_a = nb::none(), "sink"_a = 4,
             "visual_budget"_a = 0, "visual_keep"_a = "snapkv")
        .def("set_sparse", [](corehead::Engine& e, const std::optional<std::vector<std::pair<int32_t, int32_t>>>& heads,
                              int64_t sink, int64_t visual_budget, const std::string& visual_keep) {
            std::optional<corehead::SparseOptions> o;
            if (heads) o = corehead::SparseOptions{*heads, sink, visual_budget, visual_keep};
            e.set_sparse(o);
        }, "core_kv_heads"_a.none(), "sink"_a = 4, "visual_budget"_a = 0, "visual_keep"_a = "snapkv")
        .def_prop_ro("sparse_options", [](const corehead::Engine& e) -> nb::object {
            const auto& o = e.sparse_options();
            if (!o) return nb::none();
            return nb::make_tuple(o->core_kv_heads, o->sink, o->visual_budget, o->visual_keep);
        })
        .def("kv_stats", [](const corehead::Engine& e) {
            const corehead::KVStats s = e.kv_stats();
            nb::dict d;
            d["sparse"] = s.sparse;
            d["n_tokens"] = s.n_tokens;
            d["compact_tokens"] = s.compact_tokens;
            d["full_bytes"] = s.full_bytes;
            d["compact_bytes"] = s.compact_bytes;
            d["full_allocated"] = s.full_allocated;
            d["compact_allocated"] = s.compact_allocated;
            d["core_kv_heads"] = s.core_kv_heads;
            d["other_kv_heads"] = s.other_kv_heads;
            return d;
        })
        .def_prop_ro("text_info", [](const corehead::Engine& e) { return to_dict(e.text_info()); })
        .def_prop_ro("vision_info", [](const corehead::Engine& e) -> nb::object {
            const corehead::VisionInfo* v = e.vision_info();
            return v ? nb::object(to_dict(*v)) : nb::none();
        })
        .def_prop_ro("backend", &corehead::Engine::backend_name)
        .def_prop_ro("n_threads", &corehead::Engine::n_threads)
        .def_prop_ro("n_ctx", &corehead::Engine::n_ctx)
        .def_prop_ro("weight_bytes", &corehead::Engine::weight_bytes)
        .def_prop_ro("kv_bytes", &corehead::Engine::kv_bytes)
        .def_prop_ro("n_past", &corehead::Engine::n_past)
        .def("logits", [](corehead::Engine& e, const std::vector<int32_t>& tokens, bool all_positions) {
            std::vector<float> out;
            {
                nb::gil_scoped_release nogil;
                out = e.logits(tokens, all_positions);
            }
            const size_t n_vocab = static_cast<size_t>(e.text_info().n_vocab);
            if (all_positions) return to_numpy(std::move(out), {tokens.size(), n_vocab});
            return to_numpy(std::move(out), {n_vocab});
        }, "tokens"_a, "all_positions"_a = false)
        .def("generate", [](corehead::Engine& e, const std::vector<int32_t>& prompt, int64_t max_tokens, float temperature,
                            int32_t top_k, float top_p, float min_p, float repeat_penalty, int32_t repeat_last_n,
                            uint64_t seed, bool stop_at_eog, nb::object on_token) {
            corehead::GenerateOptions o = generate_options(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                                           repeat_last_n, seed, stop_at_eog);
            corehead::TokenCallback cb = token_callback(on_token);
            nb::gil_scoped_release nogil;
            return e.generate(prompt, o, cb);
        }, "prompt"_a, "max_tokens"_a = 64, "temperature"_a = 0.0f, "top_k"_a = 0, "top_p"_a = 1.0f, "min_p"_a = 0.0f,
           "repeat_penalty"_a = 1.0f, "repeat_last_n"_a = 64, "seed"_a = 0, "stop_at_eog"_a = true,
           "on_token"_a = nb::none())
        .def_prop_ro("eog_tokens", &corehead::Engine::eog_tokens)
        .def("attention", [](corehead::Engine& e, const std::vector<int32_t>& tokens, const std::vector<int32_t>& positions,
                             const std::vector<int32_t>& layers, bool full_rows, const std::vector<float>& relevance,
                             int64_t n_regions) {
            corehead::AttentionTaps t;
            {
                nb::gil_scoped_release nogil;
                t = e.attention(tokens, positions, layers, full_rows, relevance, n_regions);
            }
            return taps_dict(std::move(t), full_rows, n_regions);
        }, "tokens"_a, "positions"_a, "layers"_a, "full_rows"_a, "relevance"_a, "n_regions"_a)
        .def("attention_images", [](corehead::Engine& e, const std::string& prompt, const std::vector<ImageArray>& images,
                                    const std::string& marker, const std::vector<int32_t>& positions,
                                    const std::vector<int32_t>& layers, bool full_rows, const std::vector<float>& relevance,
                                    int64_t n_regions) {
            std::vector<corehead::Image> imgs = to_images(images);
            corehead::AttentionTaps t;
            {
                nb::gil_scoped_release nogil;
                t = e.attention(prompt, imgs, marker, positions, layers, full_rows, relevance, n_regions);
            }
            return taps_dict(std::move(t), full_rows, n_regions);
        }, "prompt"_a, "images"_a, "marker"_a, "positions"_a, "layers"_a, "full_rows"_a, "relevance"_a, "n_regions"_a)
        .def("logits_images", [](corehead::Engine& e, const std::string& prompt, const std::vector<ImageArray>& images,
                                 bool all_positions, const std::string& marker) {
            std::vector<corehead::Image> imgs = to_images(images);
            std::vector<float> out;
            {
                nb::gil_scoped_release nogil;
                out = e.logits(prompt, imgs, all_positions, marker);
            }
            const size_t n_vocab = static_cast<size_t>(e.text_info().n_vocab);
            if (all_positions) return to_numpy(std::move(out), {out.size() / n_vocab, n_vocab});
            return to_numpy(std::move(out), {n_vocab});
        }, "prompt"_a, "images"_a, "all_positions"_a = false, "marker"_a = corehead::kDefaultImageMarker)
        .def("generate_images", [](corehead::Engine& e, const std::string& prompt, const std::vector<ImageArray>& images,
                                   int64_t max_tokens, float temperature, int32_t top_k, float top_p, float min_p,
                                   float repeat_penalty, int32_t repeat_last_n, uint64_t seed, bool stop_at_eog,
                                   nb::object on_token, const std::string& marker) {
            std::vector<corehead::Image> imgs = to_images(images);
            corehead::GenerateOptions o = generate_options(max_tokens, temperature, top_k, top_p, min_p, repeat_penalty,
                                                           repeat_last_n, seed, stop_at_eog);
            corehead::TokenCallback cb = token_callback(on_token);
            nb::gil_scoped_release nogil;
            return e.generate(prompt, imgs, o, cb, marker);
        }, "prompt"_a, "images"_a, "max_tokens"_a = 64, "temperature"_a = 0.0f, "top_k"_a = 0, "top_p"_a = 1.0f,
           "min_p"_a = 0.0f, "repeat_penalty"_a = 1.0f, "repeat_last_n"_a = 64, "seed"_a = 0, "stop_at_eog"_a = true,
           "on_token"_a = nb::none(), "marker"_a = corehead::kDefaultImageMarker)
        .def("tokenize_images", [](const corehead::Engine& e, const std::string& prompt,
                                   const std::vector<ImageArray>& images, const std::string& marker) {
            std::vector<corehead::Image> imgs = to_images(images);
            corehead::MultimodalTokens t;
            {
                nb::gil_scoped_release nogil;
                t = e.tokenize(prompt, imgs, marker);
            }
            return nb::make_tuple(to_numpy_i32(std::move(t.ids)), to_numpy_i32(std::move(t.visual_positions)));
        }, "prompt"_a, "images"_a, "marker"_a = corehead::kDefaultImageMarker)
        .def("encode_image", [](corehead::Engine& e, const ImageArray& image) {
            corehead::Image img = to_image(image);
            std::vector<float> out;
            {
                nb::gil_scoped_release nogil;
                out = e.encode_image(img);
            }
            const size_t n_embd = static_cast<size_t>(e.text_info().n_embd);
            return to_numpy(std::move(out), {out.size() / n_embd, n_embd});
        }, "image"_a)
        .def("set_image_cache_limit", &corehead::Engine::set_image_cache_limit, "bytes"_a)
        .def("clear_image_cache", &corehead::Engine::clear_image_cache)
        .def("image_cache_stats", [](const corehead::Engine& e) {
            const corehead::Engine::ImageCacheStats s = e.image_cache_stats();
            nb::dict d;
            d["bytes"] = s.bytes;
            d["limit"] = s.limit;
            d["entries"] = s.entries;
            d["hits"] = s.hits;
            d["misses"] = s.misses;
            return d;
        })
        .def("preprocess_image", [](const corehead::Engine& e, const ImageArray& image) {
            corehead::Image img = to_image(image);
            std::vector<corehead::PreprocessedView> views;
            {
                nb::gil_scoped_release nogil;
                views = e.preprocess_image(img);
            }
            nb::list out;
            for (auto& v : views) {
                const size_t w = static_cast<size_t>(v.width), h = static_cast<size_t>(v.height);
                out.append(to_numpy(std::move(v.pixels), {3, h, w}));
            }
            return out;
        }, "image"_a)
        .def("visual_token_boxes", [](const corehead::Engine& e, const ImageArray& image) {
            corehead::Image img = to_image(image);
            std::vector<float> out;
            {
                nb::gil_scoped_release nogil;
                out = e.visual_token_boxes(img);
            }
            return to_numpy(std::move(out), {out.size() / 4, 4});
        }, "image"_a)
        .def_prop_ro("tokenizer", [](const corehead::Engine& e) -> nb::object {
            const corehead::Tokenizer* t = e.tokenizer();
            return t ? nb::cast(*t) : nb::none();  // a copy sharing the vocabulary
        })
        .def("set_head_interventions", [](corehead::Engine& e, const std::vector<std::tuple<int32_t, int32_t, std::string,
                                                                                   std::vector<float>>>& items,
                                          const std::vector<int32_t>& knockout_keys,
                                          const std::vector<int32_t>& knockout_from,
                                          const std::vector<int32_t>& knockout_until) {
            std::vector<corehead::HeadIntervention> list;
            for (const auto& [layer, head, kind, mean] : items) list.push_back({layer, head, kind, mean});
            e.set_head_interventions(list, knockout_keys, knockout_from, knockout_until);
        }, "interventions"_a, "knockout_keys"_a, "knockout_from"_a = std::vector<int32_t>{},
             "knockout_until"_a = std::vector<int32_t>{})
        .def("head_output_sums", [](corehead::Engine& e, const std::vector<int32_t>& tokens) {
            int64_t n = 0;
            std::vector<std::vector<double>> sums;
            {
                nb::gil_scoped_release nogil;
                sums = e.head_output_sums(tokens, n);
            }
            return nb::make_tuple(sums, n);
        }, "tokens"_a)
        .def("head_output_sums_images", [](corehead::Engine& e, const std::string& prompt,
                                           const std::vector<ImageArray>& images, const std::string& marker) {
            std::vector<corehead::Image> imgs = to_images(images);
            int64_t n = 0;
            std::vector<std::vector<double>> sums;
            {
                nb::gil_scoped_release nogil;
                sums = e.head_output_sums(prompt, imgs, marker, n);
            }
            return nb::make_tuple(sums, n);
        }, "prompt"_a, "images"_a, "marker"_a = corehead::kDefaultImageMarker)
        .def("metadata_string", &corehead::Engine::metadata_string, "key"_a)
        .def("append", [](corehead::Engine& e, const std::vector<int32_t>& tokens) {
            std::vector<float> out;
            {
                nb::gil_scoped_release nogil;
                out = e.append(tokens);
            }
            const size_t n_vocab = static_cast<size_t>(e.text_info().n_vocab);
            return to_numpy(std::move(out), {n_vocab});
        }, "tokens"_a);
}
