// Hand-written matchers for the pre-tokenizer regexes. Each matcher answers "how long is
// the regex match that starts exactly at `pos`" (0 = none) with the regex's own semantics
// (alternatives tried left to right, greedy quantifiers, backtracking where it matters);
// split() turns that into the leftmost-match iteration of a regex split.
#include "tokenizer/pretokenize.h"

#include <algorithm>
#include <unordered_map>

#include "tokenizer/unicode.h"

namespace corehead::pretok {

using unicode::cpt_flags;
using unicode::CPT_LETTER;
using unicode::CPT_MARK;
using unicode::CPT_NUMBER;
using unicode::CPT_PUNCT;
using unicode::CPT_WHITESPACE;

namespace {

inline bool is_l(uint32_t c) { return cpt_flags(c) & CPT_LETTER; }
inline bool is_n(uint32_t c) { return cpt_flags(c) & CPT_NUMBER; }
inline bool is_s(uint32_t c) { return cpt_flags(c) & CPT_WHITESPACE; }
inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }
inline uint32_t ascii_lower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

template <class Pred>
size_t run_len(const uint32_t* c, size_t pos, size_t end, Pred p, size_t max = SIZE_MAX) {
    size_t n = 0;
    while (pos + n < end && n < max && p(c[pos + n])) ++n;
    return n;
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive on the letters.
size_t contraction(const uint32_t* c, size_t pos, size_t end, bool ci) {
    if (c[pos] != '\'' || pos + 1 >= end) return 0;
    const auto low = [&](uint32_t x) { return ci ? ascii_lower(x) : x; };
    const uint32_t a = low(c[pos + 1]);
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end) return 0;
    const uint32_t b = low(c[pos + 2]);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
}

// Whitespace tail shared by the regexes: \s+(?!\S)|\s+ — a run of spaces followed by a
// non-space gives that non-space its last space (" word"), unless the run is one long.
size_t space_run(const uint32_t* c, size_t pos, size_t end) {
    const size_t n = run_len(c, pos, end, is_s);
    if (n == 0) return 0;
    if (pos + n == end) return n;
    return n > 1 ? n - 1 : 1;
}

// ' ?X+' : an optional single ASCII space, then a run of X.
template <class Pred>
size_t opt_space_run(const uint32_t* c, size_t pos, size_t end, Pred p) {
    if (c[pos] == ' ' && pos + 1 < end && p(c[pos + 1])) return 1 + run_len(c, pos + 1, end, p);
    return run_len(c, pos, end, p);
}

size_t match_gpt2(const uint32_t* c, size_t pos, size_t end) {
    if (size_t n = contraction(c, pos, end, false)) return n;
    if (size_t n = opt_space_run(c, pos, end, is_l)) return n;
    if (size_t n = opt_space_run(c, pos, end, is_n)) return n;
    const auto other = [](uint32_t x) { return !(cpt_flags(x) & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER)); };
    if (size_t n = opt_space_run(c, pos, end, other)) return n;
    // \s+(?!\S); a lone non-' ' space before a non-space matches nothing and becomes a
    // one-character gap, which splits the same way as returning 1 here.
    return space_run(c, pos, end);
}

struct Llama3Opts {
    bool contractions;
    size_t digits_max;   // \p{N}{1,digits_max}
    bool marks_in_words; // qwen3.5: [\p{L}\p{M}]+ and marks excluded from the "other" class
};

size_t match_llama3_like(const uint32_t* c, size_t pos, size_t end, const Llama3Opts& o) {
    if (o.contractions) {
        if (size_t n = contraction(c, pos, end, true)) return n;
    }
    const uint16_t word_mask = o.marks_in_words ? (CPT_LETTER | CPT_MARK) : CPT_LETTER;
    const auto word = [&](uint32_t x) { return (cpt_flags(x) & word_mask) != 0; };
    const uint32_t c0 = c[pos];
    const uint16_t f0 = cpt_flags(c0);
    // [^\r\n\p{L}\p{N}]?<word>+
    if (!is_crlf(c0) && !(f0 & (CPT_LETTER | CPT_NUMBER)) && pos + 1 < end && word(c[pos + 1])) {
        return 1 + run_len(c, pos + 1, end, word);
    }
    if (word(c0)) return run_len(c, pos, end, word);
    // \p{N}{1,k}
    if (f0 & CPT_NUMBER) return run_len(c, pos, end, is_n, o.digits_max);
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    const uint16_t not_other = CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER | (o.marks_in_words ? CPT_MARK : 0);
    const auto other = [&](uint32_t x) { return !(cpt_flags(x) & not_other); };
    if (size_t n = opt_space_run(c, pos, end, other)) return n + run_len(c, pos + n, end, is_crlf);
    // \s*[\r\n]+ : greedy \s* backtracks to the last CR/LF of the whitespace run.
    const size_t ws = run_len(c, pos, end, is_s);
    for (size_t k = ws; k > 0; --k) {
        if (is_crlf(c[pos + k - 1])) return k;
    }
    return space_run(c, pos, end);
}

// tekken in llama.cpp's form of its regex: words split where an upper-case run follows lower
// case ("camelCase" -> "camel", "Case"); single digits; a slash or line breaks after punctuation.
// U = a letter other than a-z, W = a letter other than A-Z (non-ASCII letters are both).
size_t match_tekken(const uint32_t* c, size_t pos, size_t end) {
    const auto U = [](uint32_t x) { return is_l(x) && !(x >= 'a' && x <= 'z'); };
    const auto W = [](uint32_t x) { return is_l(x) && !(x >= 'A' && x <= 'Z'); };
    const uint32_t c0 = c[pos];
    const uint16_t f0 = cpt_flags(c0);
    // [^\r\n\p{L}\p{N}]? then the letters (without the prefix a non-letter cannot start a word)
    const size_t q = (!is_crlf(c0) && !(f0 & (CPT_LETTER | CPT_NUMBER))) ? pos + 1 : pos;
    if (q < end && is_l(c[q])) {
        const size_t u = run_len(c, q, end, U);
        // U*W+: the greedy U* gives back letters until W+ can start.
        for (size_t k = u + 1; k-- > 0;) {
            if (q + k < end && W(c[q + k])) return q + k + run_len(c, q + k, end, W) - pos;
        }
        if (u > 0) return q + u - pos;  // U+W* (no W follows: see above)
    }
    if (f0 & CPT_NUMBER) return 1;
    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*'
    const auto other = [](uint32_t x) { return !(cpt_flags(x) & (CPT_WHITESPACE | CPT_LETTER | CPT_NUMBER)); };
    if (size_t n = opt_space_run(c, pos, end, other)) {
        return n + run_len(c, pos + n, end, [](uint32_t x) { return is_crlf(x) || x == '/'; });
    }
    // \s*[\r\n]+ : greedy \s* backtracks to the last CR/LF of the whitespace run.
    const size_t ws = run_len(c, pos, end, is_s);
    for (size_t k = ws; k > 0; --k) {
        if (is_crlf(c[pos + k - 1])) return k;
    }
    return space_run(c, pos, end);
}

// --- character-class based stages -------------------------------------------------------

struct RangeSet {
    std::vector<std::pair<uint32_t, uint32_t>> r;
    // Parses the body of a bracket expression made of literal characters and a-b ranges.
    explicit RangeSet(const char* utf8) {
        const auto cp = unicode::decode_utf8(utf8);
        for (size_t i = 0; i < cp.size(); ++i) {
            if (i + 2 < cp.size() && cp[i + 1] == '-') {
                r.emplace_back(cp[i], cp[i + 2]);
                i += 2;
            } else {
                r.emplace_back(cp[i], cp[i]);
            }
        }
    }
    bool has(uint32_t c) const {
        for (const auto& p : r) {
            if (p.first <= c && c <= p.second) return true;
        }
        return false;
    }
};

// deepseek's classes were run through std::wregex by the reference implementation on text
// where non-ASCII whitespace had been replaced by U+000B; whitespace therefore never
// matches them even when a range covers it (e.g. U+3000 inside "　-。").
bool ds_in(const RangeSet& set, uint32_t c) { return !is_s(c) && set.has(c); }

const RangeSet& ds_latin() {
    static const RangeSet s(
        "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃");
    return s;
}
const RangeSet& ds_punct() {
    static const RangeSet s("!-/:-~！-／：-～‘-‟　-。");
    return s;
}
const RangeSet& ds_cjk() {
    static const RangeSet s("一-龥ࠀ-一가-퟿");
    return s;
}

// '\s?X+' (std::regex order: first with the optional space, then without).
template <class Pred>
size_t opt_ws_run(const uint32_t* c, size_t pos, size_t end, Pred p) {
    if (is_s(c[pos]) && pos + 1 < end && p(c[pos + 1])) return 1 + run_len(c, pos + 1, end, p);
    return run_len(c, pos, end, p);
}

bool is_default_punct(uint32_t c) {
    return (cpt_flags(c) & CPT_PUNCT) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' ||
           c == '~' || c == '|';
}

size_t match_stage(Stage st, const uint32_t* c, size_t pos, size_t end) {
    static const Llama3Opts kLlama3{true, 3, false};
    static const Llama3Opts kQwen2{true, 1, false};
    static const Llama3Opts kQwen35{true, 1, true};
    static const Llama3Opts kAllDigits{true, SIZE_MAX, false};
    static const Llama3Opts kNoContractions{false, 1, false};
    switch (st) {
        case Stage::Gpt2: return match_gpt2(c, pos, end);
        case Stage::Llama3: return match_llama3_like(c, pos, end, kLlama3);
        case Stage::Qwen2: return match_llama3_like(c, pos, end, kQwen2);
        case Stage::Qwen35: return match_llama3_like(c, pos, end, kQwen35);
        case Stage::Llama3AllDigits: return match_llama3_like(c, pos, end, kAllDigits);
        case Stage::Qwen2NoContractions: return match_llama3_like(c, pos, end, kNoContractions);
        case Stage::Tekken: return match_tekken(c, pos, end);
        case Stage::Newlines: {
            const bool nl = c[pos] == '\n';
            return run_len(c, pos, end, [nl](uint32_t x) { return (x == '\n') == nl; });
        }
        case Stage::DigitEach: return is_n(c[pos]) ? 1 : 0;
        case Stage::DigitRun: return run_len(c, pos, end, is_n);
        case Stage::DigitsUpTo3: return run_len(c, pos, end, is_n, 3);
        case Stage::AsciiDigits3: {
            const size_t n = run_len(c, pos, end, [](uint32_t x) { return x >= '0' && x <= '9'; }, 3);
            return n == 3 ? 3 : 0;
        }
        case Stage::PunctRun: return run_len(c, pos, end, is_default_punct);
        case Stage::PunctRunFalcon:
            return run_len(c, pos, end, [](uint32_t x) { return x == '`' || is_default_punct(x); });
        case Stage::CrOrLf: return is_crlf(c[pos]) ? 1 : 0;
        case Stage::SpaceOptLetters: return opt_ws_run(c, pos, end, is_l);
        case Stage::SpaceOptPunct:
            return opt_ws_run(c, pos, end, [](uint32_t x) { return (cpt_flags(x) & CPT_PUNCT) != 0; });
        case Stage::DeepseekLatin:
            return opt_ws_run(c, pos, end, [](uint32_t x) { return ds_in(ds_latin(), x); });
        case Stage::DeepseekPunct:
            return opt_ws_run(c, pos, end, [](uint32_t x) { return ds_in(ds_punct(), x); });
        case Stage::DeepseekCjk: return run_len(c, pos, end, [](uint32_t x) { return ds_in(ds_cjk(), x); });
        case Stage::TrailingSpace: return 0;  // handled in split(): only the final run can match
    }
    return 0;
}

}  // namespace

std::vector<std::pair<size_t, size_t>> split(const std::vector<uint32_t>& cpts, const std::vector<Stage>& stages) {
    std::vector<std::pair<size_t, size_t>> pieces;
    if (!cpts.empty()) pieces.emplace_back(0, cpts.size());
    std::vector<std::pair<size_t, size_t>> next;
    const uint32_t* c = cpts.data();
    for (Stage st : stages) {
        next.clear();
        next.reserve(pieces.size() * 2);
        for (const auto& [b, e] : pieces) {
            if (st == Stage::TrailingSpace) {  // \s+$
                size_t k = e;
                while (k > b && is_s(c[k - 1])) --k;
                if (k > b) next.emplace_back(b, k);
                if (k < e) next.emplace_back(k, e);
                continue;
            }
            size_t gap = b;
            size_t pos = b;
            while (pos < e) {
                const size_t n = match_stage(st, c, pos, e);
                if (n == 0) {
                    ++pos;
                    continue;
                }
                if (gap < pos) next.emplace_back(gap, pos);
                next.emplace_back(pos, pos + n);
                pos += n;
                gap = pos;
            }
            if (gap < e) next.emplace_back(gap, e);
        }
        pieces.swap(next);
    }
    return pieces;
}

bool config_for(const std::string& name, Config& out) {
    using S = Stage;
    const std::vector<S> gpt2 = {S::Gpt2};
    const std::vector<S> starcoder = {S::DigitEach, S::Gpt2};
    Config c;
    const auto any = [&](std::initializer_list<const char*> names) {
        return std::any_of(names.begin(), names.end(), [&](const char* n) { return name == n; });
    };
    if (name == "default") {
        c.stages = {S::PunctRun, S::Gpt2, S::DigitRun, S::AsciiDigits3};
    } else if (any({"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2",
                    "jina-v5-nano", "dbrx", "smaug-bpe"})) {
        c.stages = {S::Llama3};
        if (name != "dbrx" && name != "smaug-bpe") {
            c.ignore_merges = true;
            c.add_bos_default = true;
        }
    } else if (name == "tekken") {
        c.stages = {S::Tekken};
        c.ignore_merges = true;
        c.add_bos_default = true;
    } else if (any({"chatglm-bpe", "glm4", "glm5"})) {
        c.stages = {S::Llama3};
        c.no_bos = true;
        c.ignore_merges = name != "chatglm-bpe";
    } else if (name == "deepseek-llm") {
        c.stages = {S::CrOrLf, S::DeepseekLatin, S::DeepseekPunct, S::TrailingSpace, S::DeepseekCjk, S::DigitRun};
    } else if (name == "deepseek-coder") {
        c.stages = {S::CrOrLf, S::SpaceOptLetters, S::SpaceOptPunct, S::DeepseekCjk, S::DigitEach};
    } else if (name == "falcon") {
        c.stages = {S::PunctRunFalcon, S::Gpt2, S::AsciiDigits3};
    } else if (any({"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
                    "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe", "mpt", "olmo", "jais",
                    "trillion", "granite-docling", "exaone4"})) {
        c.stages = gpt2;
    } else if (any({"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b",
                    "mellum2"})) {
        c.stages = starcoder;
    } else if (any({"qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "stablelm2", "hunyuan", "solar-open",
                    "grok-2", "megrez"})) {
        c.stages = {S::Qwen2};
    } else if (name == "qwen35") {
        c.stages = {S::Qwen35};
    } else if (name == "minicpm5") {
        c.stages = {S::DigitsUpTo3, S::Llama3AllDigits};
        c.ignore_merges = true;
    } else if (name == "ufakzeka") {
        c.stages = {S::Qwen2NoContractions};
    } else if (name == "laguna") {
        c.stages = {S::Newlines, S::Qwen2};
    } else if (any({"gemma4", "granite-embed-multi-311m", "sarvam-moe"})) {
        c.stages = {S::Newlines};
        c.byte_encode = false;
        c.escape_whitespace = true;
    } else {
        return false;
    }
    out = std::move(c);
    return true;
}

}  // namespace corehead::pretok
