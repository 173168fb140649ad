// libFuzzer target: arbitrary bytes as a model or mmproj GGUF, through the C API only
// (cpp/include/corehead/corehead.h).
//
// The input is loaded as a language model; when that works, every entry point runs on it:
// engine info, tokenize (size query, short buffer, full buffer), detokenize, logits, generate
// (one token, with a callback), attention (size query + rows), zero/knockout interventions and the
// CoRe-sparse cache. The input is also loaded as the mmproj of the fixture language model of its
// projector type, with a small image prompt. A failing call must return an error status with a
// message; an abort, a sanitizer report or a broken invariant (sizes, token ranges, a status
// without a message) is a finding. C++ exceptions cannot reach here: the C API has none.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "corehead/corehead.h"
#include "corehead/engine.h"  // inspect_mmproj: only to pick the fixture model for an mmproj input
#include "fuzz_common.h"

namespace {

std::map<std::string, std::string> g_models;  // projector type -> fixture language model

// A status is either OK or an error that says why.
bool ok(corehead_status st) {
    if (st != COREHEAD_OK) FUZZ_CHECK(corehead_last_error()[0] != '\0');
    return st == COREHEAD_OK;
}

corehead_engine_params small_params() {
    corehead_engine_params p = corehead_engine_default_params();
    p.n_ctx = 32;
    p.n_threads = 1;
    p.n_batch = 4;  // several batches per prompt
    return p;
}

bool count_tokens(int32_t, const char* piece, size_t len, void* user) {
    FUZZ_CHECK(len == 0 || piece != nullptr);
    ++*static_cast<int*>(user);
    return true;
}

void exercise_text(corehead_engine* eng) {
    corehead_engine_info info;
    FUZZ_CHECK(ok(corehead_engine_get_info(eng, &info)));
    FUZZ_CHECK(info.n_layer > 0 && info.n_head > 0 && info.n_vocab > 0 && info.n_head_kv > 0);

    // Tokenize: size query, a short buffer, then the full one.
    std::vector<int32_t> ids;
    size_t n = 0;
    const char* text = "Hello world <s> caf\xc3\xa9 \xff";
    if (ok(corehead_tokenize(eng, text, true, true, nullptr, 0, &n))) {
        ids.resize(n);
        size_t n2 = 0;
        if (n > 0) FUZZ_CHECK(corehead_tokenize(eng, text, true, true, ids.data(), n - 1, &n2) == COREHEAD_ERR_BUFFER_TOO_SMALL && n2 == n);
        FUZZ_CHECK(ok(corehead_tokenize(eng, text, true, true, ids.data(), ids.size(), &n2)) && n2 == n);
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < info.n_vocab);
        char buf[512];
        if (ok(corehead_detokenize(eng, ids.data(), ids.size(), false, nullptr, 0, &n2)) && n2 < sizeof buf) {
            FUZZ_CHECK(ok(corehead_detokenize(eng, ids.data(), ids.size(), false, buf, sizeof buf, &n2)));
            FUZZ_CHECK(buf[n2] == '\0');
        }
    }
    if (ids.empty()) {  // no tokenizer (or an empty tokenization): token ids instead
        for (int32_t i = 0; i < 5; ++i) ids.push_back((i * 7919) % info.n_vocab);
    }
    corehead_prompt prompt = {nullptr, ids.data(), ids.size(), nullptr, 0};

    std::vector<float> logits(static_cast<size_t>(info.n_vocab));
    if (ok(corehead_logits(eng, &prompt, logits.data(), logits.size(), &n))) FUZZ_CHECK(n == logits.size());

    corehead_generate_params g = corehead_generate_default_params();
    g.max_tokens = 1;
    g.stop_at_eog = false;
    int seen = 0;
    g.on_token = count_tokens;
    g.user_data = &seen;
    int32_t out[1];
    if (ok(corehead_generate(eng, &prompt, &g, out, 1, &n))) {
        FUZZ_CHECK(n <= 1 && seen == static_cast<int>(n));
        if (n == 1) FUZZ_CHECK(out[0] >= 0 && out[0] < info.n_vocab);
    }

    corehead_attention_shape shape;
    if (ok(corehead_attention(eng, &prompt, nullptr, 0, nullptr, 0, nullptr, 0, &shape, &n))) {
        FUZZ_CHECK(n == static_cast<size_t>(shape.n_layer) * shape.n_head * shape.n_pos * shape.n_kv);
        FUZZ_CHECK(shape.n_kv == static_cast<int64_t>(ids.size()) && shape.n_pos == 1);
        std::vector<float> rows(n);
        if (ok(corehead_attention(eng, &prompt, nullptr, 0, nullptr, 0, rows.data(), rows.size(), &shape, &n))) {
            for (float v : rows) FUZZ_CHECK(!(v < 0.0f) && !(v > 1.0001f));  // probabilities (NaN only from NaN weights)
        }
    }

    const corehead_intervention items[2] = {{{0, 0}, COREHEAD_INTERVENTION_ZERO, nullptr},
                                            {{info.n_layer - 1, info.n_head - 1}, COREHEAD_INTERVENTION_KNOCKOUT, nullptr}};
    const int32_t keys[1] = {0};
    const bool distinct = info.n_layer > 1 || info.n_head > 1;
    if (ok(corehead_set_interventions(eng, items, distinct ? 2 : 1, keys, 1))) {
        (void)ok(corehead_logits(eng, &prompt, logits.data(), logits.size(), &n));
        FUZZ_CHECK(ok(corehead_set_interventions(eng, nullptr, 0, nullptr, 0)));
    }

    const corehead_head core[1] = {{0, 0}};
    if (ok(corehead_sparse(eng, core, 1, nullptr))) {
        g.on_token = nullptr;
        (void)ok(corehead_generate(eng, &prompt, &g, out, 1, &n));
        FUZZ_CHECK(ok(corehead_sparse(eng, nullptr, 0, nullptr)));
    }
}

void exercise_mmproj(const std::string& path) {
    corehead::VisionInfo vi;
    try {
        vi = corehead::inspect_mmproj(path);
    } catch (const corehead::Error&) {
        return;
    }
    auto it = g_models.find(vi.projector);
    if (it == g_models.end()) return;
    corehead_engine_params p = small_params();
    p.n_ctx = 1024;
    corehead_engine* eng = corehead_engine_load(it->second.c_str(), path.c_str(), &p);
    if (!eng) {
        FUZZ_CHECK(corehead_last_error()[0] != '\0');
        return;
    }
    std::vector<uint8_t> rgb(40 * 24 * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 31);
    const corehead_image img = {rgb.data(), 40, 24};
    const corehead_prompt prompt = {COREHEAD_IMAGE_MARKER "What is this?", nullptr, 0, &img, 1};
    size_t n = 0;
    corehead_attention_shape shape;
    (void)ok(corehead_attention(eng, &prompt, nullptr, 0, nullptr, 0, nullptr, 0, &shape, &n));
    std::vector<float> logits(1 << 20);
    (void)ok(corehead_logits(eng, &prompt, logits.data(), logits.size(), &n));
    corehead_engine_free(eng);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    g_models = fuzz::fixture_models();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    fuzz::MemFile file(data, size);
    const corehead_engine_params p = small_params();
    corehead_engine* eng = corehead_engine_load(file.path().c_str(), nullptr, &p);
    if (eng) {
        exercise_text(eng);
        corehead_engine_free(eng);
    } else {
        FUZZ_CHECK(corehead_last_error()[0] != '\0');
    }
    exercise_mmproj(file.path());
    return 0;
}
