// Typed inputs of a decoder graph (the role of llama.cpp's llm_graph_input_i): each input tensor
// comes with the object that fills it from host data once the graph is allocated. A builder
// creates them through DecoderGraph::input / DecoderGraph::mask; DecoderGraph::set_inputs runs
// them all.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "ggml.h"

namespace corehead {

class GraphInput {
public:
    explicit GraphInput(ggml_tensor* t) : tensor(t) {}
    virtual ~GraphInput() = default;
    virtual void set_input() const = 0;
    ggml_tensor* const tensor;
};

// Values copied as they are (ids, positions, gates, embeddings, relevance): either borrowed from
// data that outlives the compute (the batch's) or owned.
template <typename T>
class ArrayInput final : public GraphInput {
public:
    ArrayInput(ggml_tensor* t, const T* borrowed) : GraphInput(t), data_(borrowed) {}
    ArrayInput(ggml_tensor* t, std::vector<T> owned) : GraphInput(t), owned_(std::move(owned)), data_(owned_.data()) {}
    void set_input() const override;

private:
    std::vector<T> owned_;
    const T* data_;
};

// The attention temperature of Llama 4 / Ministral 3 (transformers' get_llama_4_attn_scale),
// [1, 1, n_tokens]: 1 + scale * log(1 + floor(pos / length)) for each token's position (the RoPE
// position: its absolute place in the sequence, whatever the batch).
class AttentionTemperatureInput final : public GraphInput {
public:
    AttentionTemperatureInput(ggml_tensor* t, const int32_t* positions, float scale, int64_t length)
        : GraphInput(t), positions_(positions), scale_(scale), length_(length) {}
    void set_input() const override;
    static float value(int64_t pos, float scale, int64_t length);

private:
    const int32_t* positions_;  // the batch's, n_tokens of them
    float scale_;
    int64_t length_;
};

// visible(head, row, key): whether query `row` of the mask may attend to `key` in that head.
using Visibility = std::function<bool(int64_t head, int64_t row, int64_t key)>;

// An attention mask [n_keys, n_rows, n_heads] of 0 (visible) and −inf: F16 for flash attention,
// F32 for soft_max (taps, SnapKV scores).
class MaskInput final : public GraphInput {
public:
    MaskInput(ggml_tensor* t, Visibility visible) : GraphInput(t), visible_(std::move(visible)) {}
    void set_input() const override;

private:
    Visibility visible_;
};

}  // namespace corehead
