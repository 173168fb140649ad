#include "text/text_weights.h"

#include "runtime/weights.h"

namespace corehead {

void TextTensorTable::add(const std::string& name, std::vector<int64_t> shape, ggml_tensor* TextWeights::*slot,
                          bool required) {
    entries_.push_back({{name, std::move(shape), required}, -1, slot, nullptr});
}

void TextTensorTable::add_layers(const std::string& suffix, const std::vector<int64_t>& shape,
                                 ggml_tensor* LayerWeights::*slot, bool required) {
    for (int64_t i = 0; i < n_layer_; ++i) {
        entries_.push_back({{"blk." + std::to_string(i) + "." + suffix, shape, required}, i, nullptr, slot});
    }
}

void TextTensorTable::add_layer(int64_t layer, const std::string& suffix, std::vector<int64_t> shape,
                                ggml_tensor* LayerWeights::*slot, bool required) {
    entries_.push_back({{"blk." + std::to_string(layer) + "." + suffix, std::move(shape), required}, layer, nullptr, slot});
}

void TextTensorTable::allow(const std::string& name) { entries_.push_back({{name, {}, false}, -1, nullptr, nullptr}); }

std::vector<TensorSpec> TextTensorTable::specs() const {
    std::vector<TensorSpec> out;
    out.reserve(entries_.size());
    for (const Entry& e : entries_) out.push_back(e.spec);
    return out;
}

TextWeights TextTensorTable::resolve(const Weights& w) const {
    TextWeights t;
    t.layers.resize(n_layer_);
    for (const Entry& e : entries_) {
        if (!e.global && !e.per_layer) continue;  // allowed, unused
        ggml_tensor* x = e.spec.required ? w.get(e.spec.name) : w.find(e.spec.name);
        if (e.layer < 0) {
            t.*e.global = x;
        } else {
            t.layers[e.layer].*e.per_layer = x;
        }
    }
    if (!t.output) t.output = t.tok_embd;  // tied embeddings
    return t;
}

}  // namespace corehead
