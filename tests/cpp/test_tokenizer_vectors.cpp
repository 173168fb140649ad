// Tokenizer conformance driver: checks corehead's tokenizer against llama.cpp's vocab test
// vectors (models/ggml-vocab-*.gguf with .gguf.inp / .gguf.out from the pinned tarball).
//
//   test_tokenizer_vectors VOCAB.gguf [VOCAB2.gguf ...] [--bench]
//
// For every case: ids must equal the .out line exactly (tokenized like llama.cpp's
// tests/test-tokenizer-0: add_special = false, parse_special = false), and
// detokenize(ids) must give the input back. Also checks that the EOS/EOT text is parsed as
// one id with parse_special = true. Prints per-vocab counts and the first mismatches;
// exits non-zero on any mismatch. --bench times a >= 100 KB text (and degenerate inputs)
// per vocab. Malformed-metadata checks (in-memory GGUFs) always run.
//
// Build (no CMake needed; ggml-base is the only dependency, for the GGUF reader;
// the command lines are wrapped here, join them):
//   G=$(python tools/fetch_ggml.py)          # pinned ggml source
//   cmake -S <dir with CMakeLists: add_subdirectory($G ggml)> -B /tmp/tokbuild/ggml -G Ninja
//         -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=OFF -DCMAKE_BUILD_TYPE=Release
//   cmake --build /tmp/tokbuild/ggml --target ggml-base -j2
//   g++ -std=c++17 -O2 -Icpp/include -Icpp/src -I$G/include
//       tests/cpp/test_tokenizer_vectors.cpp cpp/src/tokenizer/{vocab,spm,bpe,pretokenize,special_tokens,unicode}.cpp
//       cpp/src/gguf/gguf_file.cpp cpp/src/runtime/ggml_log.cpp
//       /tmp/tokbuild/ggml/ggml/src/libggml-base.a -lpthread -o /tmp/tokbuild/test_tokenizer_vectors
//   L=$(python tools/fetch_ggml.py --with-llama-cpp)
//   /tmp/tokbuild/test_tokenizer_vectors $L/models/ggml-vocab-{llama-spm,llama-bpe,qwen2,gpt-2,phi-3,gemma-4}.gguf
#include "gguf/gguf_file.h"
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "corehead/error.h"
#include "gguf.h"
#include "tokenizer/vocab.h"

using corehead::token_id;

namespace {

std::string read_file(const std::string& path, bool& ok) {
    std::ifstream f(path, std::ios::binary);
    ok = static_cast<bool>(f);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> split_cases(const std::string& raw) {
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < raw.size()) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            out.push_back(raw.substr(pos));
            break;
        }
        out.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return out;
}

std::vector<token_id> parse_ids(const std::string& line) {
    std::vector<token_id> ids;
    std::istringstream in(line);
    long v;
    while (in >> v) ids.push_back(static_cast<token_id>(v));
    return ids;
}

std::string show_ids(const std::vector<token_id>& v) {
    std::string s;
    for (token_id t : v) s += std::to_string(t) + " ";
    return s;
}

std::string escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '\n') o += "\\n";
        else if (c == '\t') o += "\\t";
        else if (c == '\r') o += "\\r";
        else o += c;
    }
    return o.size() > 120 ? o.substr(0, 120) + "..." : o;
}

// Vocabularies are read through GgufFile, which opens files: write in-memory cases to one.
corehead::GgufFile via_file(const gguf_context* c) {
    const std::string path = "/tmp/corehead_tok_case.gguf";
    gguf_write_to_file(c, path.c_str(), /*only_meta=*/false);
    return corehead::GgufFile(path);
}

struct Result {
    int pass = 0, fail = 0, rt_fail = 0, special_fail = 0;
};

Result run_vocab(const std::string& path, bool bench) {
    Result r;
    std::unique_ptr<corehead::Vocab> vocab;
    const auto t0 = std::chrono::steady_clock::now();
    try {
        vocab = corehead::Vocab::from_gguf(corehead::GgufFile(path));
    } catch (const corehead::Error& e) {
        std::printf("%s: load failed: %s\n", path.c_str(), e.what());
        r.fail = 1;
        return r;
    }
    const double load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

    bool ok_inp = false, ok_out = false;
    const std::string inp = read_file(path + ".inp", ok_inp);
    const std::string outp = read_file(path + ".out", ok_out);
    std::vector<std::string> cases, expected;
    if (ok_inp && ok_out) {
        cases = split_cases(inp);
        std::istringstream lines(outp);
        for (std::string line; std::getline(lines, line);) expected.push_back(line);
        if (cases.size() != expected.size()) {
            std::printf("%s: .inp has %zu cases but .out has %zu lines\n", path.c_str(), cases.size(), expected.size());
            r.fail = 1;
            return r;
        }
    }

    int shown = 0;
    std::string all_text;
    for (size_t i = 0; i < cases.size(); ++i) {
        const std::string& s = cases[i];
        all_text += s + "\n";
        const std::vector<token_id> want = parse_ids(expected[i]);
        const std::vector<token_id> got = vocab->tokenize(s, false, false);
        if (got == want) {
            ++r.pass;
        } else {
            ++r.fail;
            if (shown++ < 5) {
                std::printf("  MISMATCH '%s'\n    want: %s\n    got:  %s\n", escape(s).c_str(), show_ids(want).c_str(),
                            show_ids(got).c_str());
            }
        }
        const std::string back = vocab->detokenize(got, false, true);
        if (back != s) {
            ++r.rt_fail;
            if (shown++ < 5) std::printf("  ROUNDTRIP '%s' -> '%s'\n", escape(s).c_str(), escape(back).c_str());
        }
    }

    // parse_special: an end-of-generation token's text must come back as that one id.
    for (token_id id : {vocab->eos(), vocab->bos()}) {
        if (id < 0 || !vocab->is_control(id)) continue;
        const std::string t = vocab->token_text(id);
        const auto got = vocab->tokenize("x" + t + "y", false, true);
        bool found = false;
        for (token_id g : got) found |= (g == id);
        if (!found || !vocab->tokenize(t, false, false).size()) {
            ++r.special_fail;
            std::printf("  SPECIAL '%s' (id %d) not parsed: %s\n", t.c_str(), id, show_ids(got).c_str());
        }
    }
    if (vocab->eos() >= 0 && !vocab->is_eog(vocab->eos())) {
        ++r.special_fail;
        std::printf("  EOS %d is not end-of-generation\n", vocab->eos());
    }

    std::printf("%-28s %-4s pre=%-15s cases %3d pass %3d fail %2d roundtrip-fail %2d special-fail %d (load %.0f ms)\n",
                path.substr(path.find_last_of('/') + 1).c_str(), vocab->type_name().c_str(), vocab->pre_name().c_str(),
                r.pass + r.fail, r.pass, r.fail, r.rt_fail, r.special_fail, load_ms);

    if (bench) {
        std::string text = all_text.empty() ? std::string("Hello world, this is a test. ") : all_text;
        while (text.size() < 100 * 1024) text += text;
        const auto b0 = std::chrono::steady_clock::now();
        const auto ids = vocab->tokenize(text, true, true);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - b0).count();
        const auto d0 = std::chrono::steady_clock::now();
        const std::string back = vocab->detokenize(ids, true, false);
        const double dms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - d0).count();
        std::printf("  bench: %zu bytes -> %zu tokens in %.1f ms (detokenize %.1f ms)\n", text.size(), ids.size(), ms,
                    dms);
        // Degenerate inputs must stay fast too (no quadratic paths).
        std::string rnd(100 * 1024, '\0');
        uint32_t seed = 12345;
        for (char& c : rnd) c = static_cast<char>((seed = seed * 1103515245u + 12345u) >> 16);
        std::string cjk;
        while (cjk.size() < 100 * 1024) cjk += "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8";
        const std::pair<const char*, std::string> odd[] = {
            {"a*100K", std::string(100 * 1024, 'a')},  {"space*100K", std::string(100 * 1024, ' ')},
            {"nl*100K", std::string(100 * 1024, '\n')}, {"digits*100K", std::string(100 * 1024, '7')},
            {"random bytes", rnd},                      {"cjk", cjk},
        };
        for (const auto& [name, t] : odd) {
            const auto o0 = std::chrono::steady_clock::now();
            const auto oids = vocab->tokenize(t, false, true);
            const double oms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - o0).count();
            std::printf("  bench %-12s -> %6zu tokens in %6.1f ms\n", name, oids.size(), oms);
        }
    }
    return r;
}

// Malformed tokenizer metadata must throw ModelError, never abort (ggml's accessors assert
// on type mismatches, so the loader has to check first).
int run_malformed_checks() {
    struct Case {
        const char* name;
        void (*fill)(gguf_context*);
    };
    static const char* toks[] = {"<unk>", "<s>", "</s>", "a", "b", "ab"};
    static const char* merges[] = {"a b"};
    const Case cases[] = {
        {"no tokenizer.ggml.model", [](gguf_context*) {}},
        {"model is not a string", [](gguf_context* c) { gguf_set_val_u32(c, "tokenizer.ggml.model", 1); }},
        {"unknown model", [](gguf_context* c) { gguf_set_val_str(c, "tokenizer.ggml.model", "nope"); }},
        {"no tokens", [](gguf_context* c) { gguf_set_val_str(c, "tokenizer.ggml.model", "llama"); }},
        {"tokens not strings",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
             const int32_t v[2] = {1, 2};
             gguf_set_arr_data(c, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, v, 2);
         }},
        {"scores too short",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
             const float s[2] = {0, 0};
             gguf_set_arr_data(c, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, s, 2);
         }},
        {"scores wrong type",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
             gguf_set_arr_str(c, "tokenizer.ggml.scores", toks, 6);
         }},
        {"token_type wrong type",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
             const float s[6] = {};
             gguf_set_arr_data(c, "tokenizer.ggml.token_type", GGUF_TYPE_FLOAT32, s, 6);
         }},
        {"bos id is a string",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
             gguf_set_val_str(c, "tokenizer.ggml.bos_token_id", "1");
         }},
        {"gpt2 without merges",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "gpt2");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
         }},
        {"unknown pre-tokenizer",
         [](gguf_context* c) {
             gguf_set_val_str(c, "tokenizer.ggml.model", "gpt2");
             gguf_set_val_str(c, "tokenizer.ggml.pre", "no-such-pre");
             gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
             gguf_set_arr_str(c, "tokenizer.ggml.merges", merges, 1);
         }},
    };
    int bad = 0;
    for (const Case& k : cases) {
        gguf_context* c = gguf_init_empty();
        k.fill(c);
        try {
            corehead::Vocab::from_gguf(via_file(c));
            std::printf("  MALFORMED '%s': no error\n", k.name);
            ++bad;
        } catch (const corehead::ModelError&) {
        } catch (const std::exception& e) {
            std::printf("  MALFORMED '%s': wrong exception: %s\n", k.name, e.what());
            ++bad;
        }
        gguf_free(c);
    }
    // A well-formed toy vocabulary: out-of-range ids throw InputError.
    gguf_context* c = gguf_init_empty();
    gguf_set_val_str(c, "tokenizer.ggml.model", "llama");
    gguf_set_arr_str(c, "tokenizer.ggml.tokens", toks, 6);
    try {
        auto v = corehead::Vocab::from_gguf(via_file(c));
        try {
            v->detokenize({99});
            std::printf("  detokenize(99): no error\n");
            ++bad;
        } catch (const corehead::InputError&) {
        }
        if (v->tokenize("ab", false, false).empty()) {
            std::printf("  toy vocab: empty tokenization\n");
            ++bad;
        }
    } catch (const std::exception& e) {
        std::printf("  toy vocab failed: %s\n", e.what());
        ++bad;
    }
    gguf_free(c);
    std::printf("malformed-metadata checks: %s\n", bad ? "FAILED" : "ok");
    return bad;
}

}  // namespace

int main(int argc, char** argv) {
    bool bench = false;
    std::vector<std::string> files;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--bench") {
            bench = true;
        } else {
            files.push_back(a);
        }
    }
    if (files.empty()) std::fprintf(stderr, "(no vocab files given: usage %s VOCAB.gguf [...] [--bench])\n", argv[0]);
    int bad = run_malformed_checks();
    for (const auto& f : files) {
        const Result r = run_vocab(f, bench);
        bad += r.fail + r.rt_fail + r.special_fail;
    }
    std::printf("%s\n", bad ? "FAILED" : "ALL PASSED");
    return bad ? 1 : 0;
}
