// Engine: owns the backends, the validated model files and their weights.
#include "corehead/engine.h"

#include "ggml.h"
#include "gguf/gguf_file.h"
#include "runtime/backend.h"
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
    int64_t n_ctx = 0;
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
    I.backends = create_backends(o.backend, o.n_threads);
    I.text_weights = std::make_unique<Weights>(*I.text.file, I.backends->main);
    if (I.vision) I.vision_weights = std::make_unique<Weights>(*I.vision->file, I.backends->main);
}

Engine::~Engine() = default;

const TextInfo& Engine::text_info() const { return impl_->text_info; }
const VisionInfo* Engine::vision_info() const { return impl_->vision_info ? &*impl_->vision_info : nullptr; }
const std::string& Engine::backend_name() const { return impl_->backends->name; }
int Engine::n_threads() const { return impl_->backends->n_threads; }
int64_t Engine::n_ctx() const { return impl_->n_ctx; }
size_t Engine::weight_bytes() const {
    return impl_->text_weights->nbytes() + (impl_->vision_weights ? impl_->vision_weights->nbytes() : 0);
}

}  // namespace corehead
