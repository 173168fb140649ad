// libFuzzer target: arbitrary bytes as a model or mmproj GGUF.
//
// Every corehead entry that takes a file runs on the input: inspect_model, inspect_mmproj,
// Tokenizer::from_file, and, when a file passes validation, a full Engine load (weights read,
// KV cache and graphs built) with a short forward pass, generation and attention taps; an
// mmproj that passes is loaded with the fixture language model of its family and encodes an
// image. corehead::Error (ModelError, InputError, ...) is the only acceptable outcome for a
// bad file: any other exception, an abort (GGML_ASSERT), a sanitizer report or a broken
// invariant is a finding.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "corehead/engine.h"
#include "fuzz_common.h"

using namespace corehead;

namespace {

// projector type -> the fixture language model that matches it.
std::map<std::string, std::string> g_models;

void run_text(const std::string& path) {
    TextInfo info;
    try {
        info = inspect_model(path);
    } catch (const Error&) {
        return;
    }
    FUZZ_CHECK(info.n_layer > 0 && info.n_head > 0 && info.n_embd > 0 && info.n_vocab > 0);
    try {
        Tokenizer tok = Tokenizer::from_file(path);
        for (const char* s : {"Hello world", " two  spaces\n\ttab, caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd 12345",
                              "<s><|im_start|>user<end_of_turn>", "\xff\xfe invalid utf8 \xc3"}) {
            for (bool special : {false, true}) {
                std::vector<int32_t> ids = tok.tokenize(s, special, special);
                for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.n_tokens());
                (void)tok.detokenize(ids, false, true);
            }
        }
        for (int32_t id = 0; id < std::min<int32_t>(tok.n_tokens(), 300); ++id) (void)tok.token_to_piece(id);
    } catch (const Error&) {
    }
    if (info.vocab_only) return;
    try {
        EngineOptions o;
        o.model = path;
        o.n_ctx = 32;
        o.n_threads = 1;
        o.n_batch = 4;  // several batches per prompt
        Engine e(o);
        const int32_t nv = static_cast<int32_t>(info.n_vocab);
        std::vector<int32_t> prompt;
        for (int32_t i = 0; i < 6; ++i) prompt.push_back((i * 7919) % nv);
        std::vector<float> l = e.logits(prompt, true);
        FUZZ_CHECK(l.size() == prompt.size() * static_cast<size_t>(nv));
        GenerateOptions g;
        g.max_tokens = 3;
        g.stop_at_eog = false;
        std::vector<int32_t> out = e.generate(prompt, g);
        for (int32_t id : out) FUZZ_CHECK(id >= 0 && id < nv);
        AttentionTaps t = e.attention(prompt, {-1, 0}, {}, true, {}, 0);
        FUZZ_CHECK(t.rows.size() == t.layers.size() * t.n_head * 2 * prompt.size());
    } catch (const Error&) {
    }
}

void run_mmproj(const std::string& path) {
    VisionInfo info;
    try {
        info = inspect_mmproj(path);
    } catch (const Error&) {
        return;
    }
    auto it = g_models.find(info.projector);
    if (it == g_models.end()) return;
    try {
        EngineOptions o;
        o.model = it->second;
        o.mmproj = path;
        o.n_ctx = 1024;
        o.n_threads = 1;
        Engine e(o);
        Image img;
        img.width = 40;
        img.height = 24;
        img.rgb.resize(40 * 24 * 3);
        for (size_t i = 0; i < img.rgb.size(); ++i) img.rgb[i] = static_cast<uint8_t>(i * 31);
        std::vector<float> boxes = e.visual_token_boxes(img);
        std::vector<float> emb = e.encode_image(img);
        FUZZ_CHECK(!boxes.empty() && boxes.size() % 4 == 0);
        FUZZ_CHECK(emb.size() == boxes.size() / 4 * static_cast<size_t>(info.n_out));
        std::vector<float> l = e.logits("<__media__>What is this?", {img}, false);
        FUZZ_CHECK(!l.empty());
    } catch (const Error&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    g_models = fuzz::fixture_models();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::MemFile file(data, size);
    // Dispatch on what the file claims to be, so both loaders see every mutation that parses.
    run_text(file.path());
    run_mmproj(file.path());
    return 0;
}
