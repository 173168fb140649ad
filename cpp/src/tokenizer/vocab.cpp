// Vocabulary loading from GGUF metadata, special-token bookkeeping (ids, EOG set, the
// name-based attribute fixups GGUF files rely on), pieces and detokenization, and the
// Vocab::from_gguf factory. The merge algorithms live in spm.cpp / bpe.cpp.
#include <algorithm>
#include <cctype>
#include <cstring>

#include "corehead/error.h"
#include "gguf.h"
#include "gguf/gguf_file.h"
#include "tokenizer/vocab_impl.h"

namespace corehead {

namespace tok {

namespace {

// GGUF token_type values (llama.cpp's convention, written by every converter).
uint32_t attr_from_type(int32_t t) {
    switch (t) {
        case 1: return ATTR_NORMAL;
        case 2: return ATTR_UNKNOWN;
        case 3: return ATTR_CONTROL;
        case 4: return ATTR_USER_DEFINED;
        case 5: return ATTR_UNUSED;
        case 6: return ATTR_BYTE;
        default: return ATTR_UNDEFINED;
    }
}

// Converters do not mark these as end-of-generation / control reliably, so (like the
// reference implementation) they are recognised by their text.
const char* const kEotTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                 "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                                 "<end_of_utterance>"};
const char* const kEomTexts[] = {"<|eom_id|>"};
const char* const kFimPreTexts[] = {"<|fim_prefix|>", "<fim-prefix>",    "<fim_prefix>", "<｜fim▁begin｜>",
                                    "<PRE>",          "▁<PRE>",          "<|code_prefix|>", "<|prefix|>"};
const char* const kFimSufTexts[] = {"<|fim_suffix|>", "<fim-suffix>",    "<fim_suffix>", "<｜fim▁hole｜>",
                                    "<SUF>",          "▁<SUF>",          "<|code_suffix|>", "<|suffix|>"};
const char* const kFimMidTexts[] = {"<|fim_middle|>", "<fim-middle>",    "<fim_middle>", "<｜fim▁end｜>",
                                    "<MID>",          "▁<MID>",          "<|code_middle|>", "<|middle|>"};
const char* const kFimPadTexts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"};
const char* const kFimRepTexts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"};
const char* const kFimSepTexts[] = {"<|file_sep|>"};
const char* const kEogTexts[] = {"<|eot_id|>",     "<|im_end|>",       "<|end|>",         "<|return|>",
                                 "<|call|>",       "<|flush|>",        "<|calls|>",       "<end_of_turn>",
                                 "<|endoftext|>",  "</s>",             "<|eom_id|>",      "<EOT>",
                                 "_<EOT>",         "[EOT]",            "[EOS]",           "<|end_of_text|>",
                                 "<end_of_utterance>", "<eos>",        "<turn|>",         "<|tool_response>",
                                 "<｜end▁of▁sentence｜>", "[e~["};

}  // namespace

void SpecialMatcher::build(const std::vector<std::string>& texts, const std::vector<token_id>& ids) {
    nodes_.assign(1, Node{});
    for (token_id id : ids) {
        int32_t n = 0;
        for (char ch : texts[id]) {
            auto& nx = nodes_[n].next;
            const auto it = nx.find(static_cast<uint8_t>(ch));
            if (it != nx.end()) {
                n = it->second;
            } else {
                const int32_t fresh = static_cast<int32_t>(nodes_.size());
                nx.emplace(static_cast<uint8_t>(ch), fresh);
                nodes_.emplace_back();
                n = fresh;
            }
        }
        if (nodes_[n].id < 0) nodes_[n].id = id;  // duplicate texts: the first id wins
    }
}

VocabBase::VocabBase(const GgufFile& file, VocabKind kind, std::string model,
                     std::string pre, bool add_space_prefix_default, bool add_bos_default, bool no_bos)
    : kind_(kind), model_(std::move(model)), pre_(std::move(pre)) {
    load_tokens(file);
    load_special_ids(file, kind, no_bos);

    add_space_prefix_ = add_space_prefix_default;
    add_space_prefix_ = file.find_bool("tokenizer.ggml.add_space_prefix").value_or(add_space_prefix_);
    add_bos_ = add_bos_default;
    add_eos_ = false;
    add_bos_ = file.find_bool("tokenizer.ggml.add_bos_token").value_or(add_bos_);
    add_eos_ = file.find_bool("tokenizer.ggml.add_eos_token").value_or(add_eos_);
    if (model_ == "gemma4") add_bos_ = true;  // gemma4 GGUFs say false but the model needs <bos>

    apply_name_fixups(file);
}

void VocabBase::load_tokens(const GgufFile& file) {
    const gguf_context* ctx = file.gguf();
    const std::string& path = file.path();
    size_t n = 0;
    const int64_t ti = file.find_array("tokenizer.ggml.tokens", GGUF_TYPE_STRING, n);
    if (ti < 0 || n == 0) throw ModelError(path + ": no tokenizer vocabulary (tokenizer.ggml.tokens)");
    if (n > static_cast<size_t>(INT32_MAX)) throw ModelError(path + ": tokenizer vocabulary too large");

    const float* fscores = nullptr;
    const int32_t* iscores = nullptr;
    const int64_t si = gguf_find_key(ctx, "tokenizer.ggml.scores");
    if (si >= 0) {
        const bool arr = gguf_get_kv_type(ctx, si) == GGUF_TYPE_ARRAY;
        const gguf_type et = arr ? gguf_get_arr_type(ctx, si) : GGUF_TYPE_COUNT;
        if (et != GGUF_TYPE_FLOAT32 && et != GGUF_TYPE_INT32) {
            throw ModelError(path + ": tokenizer.ggml.scores must be an array of float32 or int32");
        }
        if (gguf_get_arr_n(ctx, si) < n) throw ModelError(path + ": tokenizer.ggml.scores has fewer entries than tokens");
        if (et == GGUF_TYPE_FLOAT32) {
            fscores = static_cast<const float*>(gguf_get_arr_data(ctx, si));
        } else {
            iscores = static_cast<const int32_t*>(gguf_get_arr_data(ctx, si));
        }
    }
    size_t ntype = 0;
    const int64_t tyi = file.find_array("tokenizer.ggml.token_type", GGUF_TYPE_INT32, ntype);
    if (tyi >= 0 && ntype < n) throw ModelError(path + ": tokenizer.ggml.token_type has fewer entries than tokens");
    const int32_t* types = tyi >= 0 ? static_cast<const int32_t*>(gguf_get_arr_data(ctx, tyi)) : nullptr;

    text_.resize(n);
    score_.resize(n);
    attr_.resize(n);
    for (size_t i = 0; i < n; ++i) {
        text_[i] = gguf_get_arr_str(ctx, ti, i);
        if (text_[i].empty()) text_[i] = "[EMPTY_" + std::to_string(i) + "]";  // keeps ids unique
        score_[i] = fscores ? fscores[i] : iscores ? static_cast<float>(iscores[i]) : 0.0f;
        attr_[i] = types ? attr_from_type(types[i]) : ATTR_NORMAL;
    }
    by_text_.reserve(n);
    for (size_t i = 0; i < n; ++i) by_text_.emplace(std::string_view(text_[i]), static_cast<token_id>(i));
}

void VocabBase::load_special_ids(const GgufFile& file, VocabKind kind, bool no_bos) {
    // Per-model defaults used when the GGUF has no key (llama.cpp's conventions).
    if (kind == VocabKind::Spm) {
        bos_ = 1, eos_ = 2, unk_ = 0;
    } else if (model_ == "gpt2") {
        bos_ = 11, eos_ = 11;
    }
    token_id fim_pre = -1, fim_suf = -1, fim_mid = -1, fim_pad = -1, fim_rep = -1, fim_sep = -1;
    const struct {
        const char* key;
        token_id* dst;
    } keys[] = {
        {"tokenizer.ggml.bos_token_id", &bos_},         {"tokenizer.ggml.eos_token_id", &eos_},
        {"tokenizer.ggml.eot_token_id", &eot_},         {"tokenizer.ggml.eom_token_id", &eom_},
        {"tokenizer.ggml.unknown_token_id", &unk_},     {"tokenizer.ggml.fim_pre_token_id", &fim_pre},
        {"tokenizer.ggml.fim_suf_token_id", &fim_suf},  {"tokenizer.ggml.fim_mid_token_id", &fim_mid},
        {"tokenizer.ggml.fim_pad_token_id", &fim_pad},  {"tokenizer.ggml.fim_rep_token_id", &fim_rep},
        {"tokenizer.ggml.fim_sep_token_id", &fim_sep},  {"tokenizer.ggml.prefix_token_id", &fim_pre},
        {"tokenizer.ggml.suffix_token_id", &fim_suf},   {"tokenizer.ggml.middle_token_id", &fim_mid},
    };
    for (const auto& k : keys) {
        if (*k.dst >= n_tokens()) *k.dst = -1;
        const int64_t v = file.find_int(k.key).value_or(-1);
        if (v >= 0 && v < n_tokens()) *k.dst = static_cast<token_id>(v);
        // an out-of-range id keeps the default, as the reference does
    }
    if (no_bos) bos_ = -1;

    // Autodetect by text; a detected token is forced to CONTROL so it renders/partitions
    // like the other special tokens.
    const auto detect = [&](token_id& id, auto const& texts) {
        if (id >= 0) return;
        for (const char* t : texts) {
            const token_id f = find(t);
            if (f >= 0) {
                id = f;
                attr_[f] |= ATTR_CONTROL;
                return;
            }
        }
    };
    detect(eot_, kEotTexts);
    detect(eom_, kEomTexts);
    detect(fim_pre, kFimPreTexts);
    detect(fim_suf, kFimSufTexts);
    detect(fim_mid, kFimMidTexts);
    detect(fim_pad, kFimPadTexts);
    detect(fim_rep, kFimRepTexts);
    detect(fim_sep, kFimSepTexts);

    for (token_id id : {fim_pad, fim_rep, fim_sep, eos_, eot_, eom_}) {
        if (id >= 0) eog_.insert(id);
    }
    for (const char* t : kEogTexts) {
        const token_id f = find(t);
        if (f >= 0) {
            eog_.insert(f);
            attr_[f] |= ATTR_CONTROL;
        }
    }
    // gpt-oss (harmony): these markers must always render as text.
    for (const char* t : {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"}) {
        const token_id f = find(t);
        if (f >= 0) attr_[f] = ATTR_USER_DEFINED;
    }
    // harmony / solar-open: "<|end|>" ends a message, not the generation.
    const auto eog_has = [&](const char* t) {
        const token_id f = find(t);
        return f >= 0 && eog_.count(f);
    };
    if (eog_has("<|end|>") &&
        ((eog_has("<|return|>") && (eog_has("<|call|>") || eog_has("<|calls|>"))) ||
         ((eog_has("<|call|>") || eog_has("<|calls|>")) && eog_has("<|flush|>")))) {
        const token_id e = find("<|end|>");
        eog_.erase(e);
        attr_[e] = ATTR_USER_DEFINED;
    }
    // gemma4 / plamo2: "</s>" is an ordinary token there.
    if ((eog_has("<|tool_response>") || eog_has("<|plamo:eos|>")) && eog_has("</s>")) {
        const token_id s = find("</s>");
        eog_.erase(s);
        attr_[s] = ATTR_NORMAL;
    }
}

void VocabBase::apply_name_fixups(const GgufFile& file) {
    // Phi-3's chat tokens swallow the whitespace that follows them (HF rstrip=True); the
    // GGUF does not say so, the model name does.
    std::string name = file.find_str("general.name").value_or("");
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name.find("phi-3") == std::string::npos && name.find("phi3") == std::string::npos) return;
    for (token_id id = 0; id < n_tokens(); ++id) {
        if (attr_[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) attr_[id] |= ATTR_RSTRIP;
    }
    if (token_id f = find("</s>"); f >= 0) attr_[f] |= ATTR_RSTRIP;
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"}) {
        if (token_id f = find(t); f >= 0) attr_[f] &= ~ATTR_RSTRIP;
    }
}

void VocabBase::build_caches() {
    std::vector<token_id> all, user;
    for (token_id id = 0; id < n_tokens(); ++id) {
        const uint32_t a = attr_[id];
        if (a & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) all.push_back(id);
        // Without parse_special, user-defined tokens are still split out first (HF added
        // tokens behave so); control and unknown tokens are not.
        if ((a & ATTR_USER_DEFINED) && !(a & (ATTR_CONTROL | ATTR_UNKNOWN))) user.push_back(id);
    }
    special_all_.build(text_, all);
    special_user_.build(text_, user);
    piece_cache_.resize(text_.size());
    for (token_id id = 0; id < n_tokens(); ++id) piece_cache_[id] = piece_uncached(id);
}

int VocabBase::parse_byte_token(const std::string& t) {
    if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
    const auto hex = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    const int hi = hex(t[3]), lo = hex(t[4]);
    return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

token_id VocabBase::byte_token(uint8_t b) const {
    static const char* hex = "0123456789ABCDEF";
    const char buf[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
    token_id id = find(std::string_view(buf, 6));
    if (id < 0) id = find(std::string_view(reinterpret_cast<const char*>(&b), 1));
    return id;
}

std::string VocabBase::piece_uncached(token_id id) const {
    const uint32_t a = attr_[id];
    if (a & (ATTR_CONTROL | ATTR_UNKNOWN | ATTR_USER_DEFINED)) return text_[id];
    if (a & ATTR_NORMAL) return normal_piece(id);
    if (a & ATTR_BYTE) {
        const int b = parse_byte_token(text_[id]);
        return b >= 0 ? std::string(1, static_cast<char>(b)) : normal_piece(id);
    }
    return {};  // unused / undefined tokens render as nothing
}

const std::string& VocabBase::token_text(token_id id) const {
    if (!valid(id)) throw InputError("token id " + std::to_string(id) + " out of range [0, " + std::to_string(n_tokens()) + ")");
    return text_[id];
}

token_id VocabBase::find(std::string_view text) const {
    const auto it = by_text_.find(text);
    return it == by_text_.end() ? -1 : it->second;
}

std::string VocabBase::token_to_piece(token_id id, bool unparse_special) const {
    if (!valid(id)) throw InputError("token id " + std::to_string(id) + " out of range [0, " + std::to_string(n_tokens()) + ")");
    if (!unparse_special && (attr_[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) return {};
    return piece_cache_[id];
}

std::string VocabBase::detokenize(const std::vector<token_id>& ids, bool remove_special, bool unparse_special) const {
    size_t b = 0, e = ids.size();
    // The dummy-prefix space of the first word is dropped (SPM), except right after a
    // BOS that remove_special strips: llama.cpp's rule, kept so outputs compare equal.
    bool strip_space = add_space_prefix_;
    if (remove_special && add_bos_ && e > b && ids[b] == bos_) {
        strip_space = false;
        ++b;
    }
    if (remove_special && add_eos_ && e > b && ids[e - 1] == eos_) --e;
    std::string out;
    for (size_t i = b; i < e; ++i) {
        const token_id id = ids[i];
        if (!valid(id)) throw InputError("token id " + std::to_string(id) + " out of range [0, " + std::to_string(n_tokens()) + ")");
        if (remove_special && (attr_[id] & ATTR_CONTROL)) {
            strip_space = false;
            continue;
        }
        const std::string piece = token_to_piece(id, unparse_special);
        if (strip_space && !piece.empty() && piece[0] == ' ') {
            out.append(piece, 1, std::string::npos);
        } else {
            out += piece;
        }
        strip_space = false;
    }
    return out;
}

std::vector<token_id> VocabBase::tokenize(std::string_view text, bool add_special, bool parse_special) const {
    std::vector<token_id> out;
    out.reserve(text.size() / 3 + 4);
    if (add_special && add_bos_ && bos_ >= 0) out.push_back(bos_);
    bool after_special = true;
    for (const Fragment& f : partition(text, parse_special)) {
        if (f.id >= 0) {
            out.push_back(f.id);
            after_special = true;
        } else {
            tokenize_text(text.substr(f.begin, f.end - f.begin), after_special, out);
            after_special = false;
        }
    }
    if (add_special && add_eos_ && eos_ >= 0) out.push_back(eos_);
    return out;
}

}  // namespace tok

std::unique_ptr<Vocab> Vocab::from_gguf(const GgufFile& file) {
    const auto model = file.find_str("tokenizer.ggml.model");
    if (!model) file.fail("no tokenizer in this GGUF (tokenizer.ggml.model missing)");
    if (*model == "llama") return tok::make_spm_vocab(file);
    if (*model == "gpt2" || *model == "gemma4") return tok::make_bpe_vocab(file, *model);
    throw ModelError(file.path() + ": tokenizer model '" + *model + "' is not supported (supported: llama, gpt2, gemma4)");
}

}  // namespace corehead
