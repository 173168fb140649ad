// Code point helpers for the tokenizer: UTF-8 decoding/encoding, Unicode category flags
// (from the generated unicode_tables.inc) and GPT-2's byte <-> "printable unicode" mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace corehead::unicode {

// Category flags of a code point; the values must match tools/build/gen_unicode_tables.py.
enum : uint16_t {
    CPT_LETTER = 1 << 0,      // \p{L}
    CPT_NUMBER = 1 << 1,      // \p{N}
    CPT_MARK = 1 << 2,        // \p{M}
    CPT_PUNCT = 1 << 3,       // \p{P}
    CPT_SYMBOL = 1 << 4,      // \p{S}
    CPT_SEPARATOR = 1 << 5,   // \p{Z}
    CPT_CONTROL = 1 << 6,     // \p{C} except Cn
    CPT_UNASSIGNED = 1 << 7,  // Cn
    CPT_WHITESPACE = 1 << 8,  // \s (White_Space property)
};

uint16_t cpt_flags(uint32_t cpt);

inline bool is_letter(uint32_t c) { return cpt_flags(c) & CPT_LETTER; }
inline bool is_number(uint32_t c) { return cpt_flags(c) & CPT_NUMBER; }
inline bool is_space(uint32_t c) { return cpt_flags(c) & CPT_WHITESPACE; }

// Byte length of the UTF-8 sequence starting with this lead byte (1 for stray bytes).
inline size_t utf8_len(char lead) {
    static const uint8_t lut[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lut[static_cast<uint8_t>(lead) >> 4];
}

// Decodes UTF-8; an invalid or truncated sequence yields U+FFFD and consumes one byte
// (what the reference tokenizers do, so ids stay comparable on odd input).
std::vector<uint32_t> decode_utf8(std::string_view s);
void append_utf8(std::string& out, uint32_t cpt);

// GPT-2 byte-level BPE: every byte maps to one printable code point ("Ġ" for ' ', ...).
const std::string& byte_to_unicode(uint8_t b);
// Inverse on one code point; returns -1 when the code point is not in the mapping.
int unicode_to_byte(uint32_t cpt);

}  // namespace corehead::unicode
