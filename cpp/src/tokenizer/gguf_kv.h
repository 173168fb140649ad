// Type-checked reads of GGUF metadata for the tokenizer. ggml's gguf_get_* accessors
// GGML_ASSERT on a type mismatch, so every read checks the stored type first and throws
// ModelError instead (bad metadata must never abort the process).
#pragma once
#include <cstdint>
#include <string>

#include "corehead/error.h"
#include "gguf.h"

namespace corehead::tok::kv {

inline std::string where(const std::string& path, const char* key) { return path + ": metadata key '" + key + "'"; }

inline int64_t find(const gguf_context* ctx, const char* key) { return gguf_find_key(ctx, key); }

inline bool is_int_type(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_INT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_INT16 ||
           t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_UINT64 || t == GGUF_TYPE_INT64;
}

// Optional string; returns false when absent.
inline bool get_str(const gguf_context* ctx, const char* key, const std::string& path, std::string& out) {
    const int64_t i = find(ctx, key);
    if (i < 0) return false;
    if (gguf_get_kv_type(ctx, i) != GGUF_TYPE_STRING) throw ModelError(where(path, key) + " is not a string");
    out = gguf_get_val_str(ctx, i);
    return true;
}

inline bool get_bool(const gguf_context* ctx, const char* key, const std::string& path, bool& out) {
    const int64_t i = find(ctx, key);
    if (i < 0) return false;
    const gguf_type t = gguf_get_kv_type(ctx, i);
    if (t == GGUF_TYPE_BOOL) {
        out = gguf_get_val_bool(ctx, i);
    } else if (t == GGUF_TYPE_UINT8) {  // some converters wrote flags as u8
        out = gguf_get_val_u8(ctx, i) != 0;
    } else {
        throw ModelError(where(path, key) + " is not a bool");
    }
    return true;
}

// Any integer type, returned as int64.
inline bool get_int(const gguf_context* ctx, const char* key, const std::string& path, int64_t& out) {
    const int64_t i = find(ctx, key);
    if (i < 0) return false;
    switch (gguf_get_kv_type(ctx, i)) {
        case GGUF_TYPE_UINT8: out = gguf_get_val_u8(ctx, i); break;
        case GGUF_TYPE_INT8: out = gguf_get_val_i8(ctx, i); break;
        case GGUF_TYPE_UINT16: out = gguf_get_val_u16(ctx, i); break;
        case GGUF_TYPE_INT16: out = gguf_get_val_i16(ctx, i); break;
        case GGUF_TYPE_UINT32: out = gguf_get_val_u32(ctx, i); break;
        case GGUF_TYPE_INT32: out = gguf_get_val_i32(ctx, i); break;
        case GGUF_TYPE_UINT64: out = static_cast<int64_t>(gguf_get_val_u64(ctx, i)); break;
        case GGUF_TYPE_INT64: out = gguf_get_val_i64(ctx, i); break;
        default: throw ModelError(where(path, key) + " is not an integer");
    }
    return true;
}

// Array of the given element type; returns its index (or -1 when absent) and its length.
inline int64_t find_arr(const gguf_context* ctx, const char* key, const std::string& path, gguf_type elem,
                        size_t& n) {
    const int64_t i = find(ctx, key);
    n = 0;
    if (i < 0) return -1;
    if (gguf_get_kv_type(ctx, i) != GGUF_TYPE_ARRAY || gguf_get_arr_type(ctx, i) != elem) {
        throw ModelError(where(path, key) + " must be an array of " + gguf_type_name(elem));
    }
    n = gguf_get_arr_n(ctx, i);
    return i;
}

}  // namespace corehead::tok::kv
