#include "gguf/gguf_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <sys/stat.h>

#include "corehead/error.h"
#include "ggml.h"
#include "gguf.h"
#include "runtime/ggml_log.h"

namespace corehead {

namespace {

constexpr uint64_t kHeaderSize = 4 + 4 + 8 + 8;  // magic, version, n_tensors, n_kv

bool is_int_type(gguf_type t) {
    switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16:
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64:
            return true;
        default:
            return false;
    }
}

// Reads element i of a scalar-typed buffer as int64 (uint64 values above INT64_MAX fail).
bool int_at(gguf_type t, const void* data, size_t i, int64_t& out) {
    switch (t) {
        case GGUF_TYPE_UINT8: out = static_cast<const uint8_t*>(data)[i]; return true;
        case GGUF_TYPE_INT8: out = static_cast<const int8_t*>(data)[i]; return true;
        case GGUF_TYPE_UINT16: out = static_cast<const uint16_t*>(data)[i]; return true;
        case GGUF_TYPE_INT16: out = static_cast<const int16_t*>(data)[i]; return true;
        case GGUF_TYPE_UINT32: out = static_cast<const uint32_t*>(data)[i]; return true;
        case GGUF_TYPE_INT32: out = static_cast<const int32_t*>(data)[i]; return true;
        case GGUF_TYPE_INT64: out = static_cast<const int64_t*>(data)[i]; return true;
        case GGUF_TYPE_UINT64: {
            uint64_t v = static_cast<const uint64_t*>(data)[i];
            if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
            out = static_cast<int64_t>(v);
            return true;
        }
        default: return false;
    }
}

// Bytes of one scalar GGUF value (strings: their 8-byte length prefix at least).
uint64_t scalar_size(uint32_t t) {
    switch (t) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
        case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
        case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
        default: return 8;  // UINT64, INT64, FLOAT64, STRING
    }
}

// Walks the metadata and tensor infos (everything before the tensor data) and checks their
// structure before ggml's parser sees the file: value types and element types known, every
// length and count inside the file, tensor ranks and types valid. ggml's parser reads type fields
// straight into its enums (undefined behaviour for values outside them) and then checks; after
// this walk it only ever sees well-formed structure, and the messages here say what is wrong.
class MetadataScan {
public:
    MetadataScan(FILE* f, uint64_t size, const GgufFile& file) : f_(f), size_(size), file_(file) {}

    void run(uint64_t n_tensors, uint64_t n_kv) {
        if (fseeko(f_, static_cast<off_t>(kHeaderSize), SEEK_SET) != 0) file_.fail("cannot read the metadata");
        pos_ = kHeaderSize;
        for (uint64_t i = 0; i < n_kv; ++i) {
            const std::string key = string("metadata key " + std::to_string(i));
            const uint32_t type = u32("the type of metadata key '" + key + "'");
            if (type >= GGUF_TYPE_COUNT) {
                file_.fail("corrupt metadata: key '" + key + "' has unknown value type " + std::to_string(type));
            }
            if (type != GGUF_TYPE_ARRAY) {
                value(type, key);
                continue;
            }
            const uint32_t elem = u32("the element type of metadata array '" + key + "'");
            if (elem >= GGUF_TYPE_COUNT || elem == GGUF_TYPE_ARRAY) {
                file_.fail("corrupt metadata: array '" + key + "' has unsupported element type " + std::to_string(elem));
            }
            const uint64_t n = u64("the length of metadata array '" + key + "'");
            const uint64_t min_size = elem == GGUF_TYPE_STRING ? 8 : scalar_size(elem);
            if (n > (size_ - pos_) / min_size) {
                file_.fail("corrupt metadata: array '" + key + "' claims " + std::to_string(n) +
                           " elements, more than the rest of the file holds");
            }
            if (elem == GGUF_TYPE_STRING) {
                for (uint64_t j = 0; j < n; ++j) skip(u64("a string of array '" + key + "'"), "a string of array '" + key + "'");
            } else {
                skip(n * min_size, "array '" + key + "'");
            }
        }
        for (uint64_t i = 0; i < n_tensors; ++i) {
            const std::string name = string("tensor name " + std::to_string(i));
            if (name.size() >= GGML_MAX_NAME) {
                file_.fail("corrupt tensor info: tensor name '" + name.substr(0, 80) + "...' is longer than " +
                           std::to_string(GGML_MAX_NAME - 1) + " characters");
            }
            const uint32_t n_dims = u32("the rank of tensor '" + name + "'");
            if (n_dims == 0 || n_dims > GGML_MAX_DIMS) {
                file_.fail("corrupt tensor info: tensor '" + name + "' has " + std::to_string(n_dims) + " dimensions (1.." +
                           std::to_string(GGML_MAX_DIMS) + " allowed)");
            }
            skip(8ull * n_dims, "the shape of tensor '" + name + "'");
            const uint32_t type = u32("the type of tensor '" + name + "'");
            if (type >= GGML_TYPE_COUNT || ggml_get_type_traits(static_cast<ggml_type>(type))->blck_size == 0) {
                file_.fail("tensor '" + name + "' has unknown or removed ggml type " + std::to_string(type) +
                           " (a newer or older GGUF than this build of ggml supports?)");
            }
            skip(8, "the offset of tensor '" + name + "'");
        }
    }

private:
    void need(uint64_t n, const std::string& what) {
        if (n > size_ - pos_) file_.fail("truncated or corrupt metadata: " + what + " runs past the end of the file");
    }
    void read(void* dst, size_t n, const std::string& what) {
        need(n, what);
        if (std::fread(dst, 1, n, f_) != n) file_.fail("cannot read the metadata (" + what + ")");
        pos_ += n;
    }
    void skip(uint64_t n, const std::string& what) {
        need(n, what);
        pos_ += n;
        if (fseeko(f_, static_cast<off_t>(pos_), SEEK_SET) != 0) file_.fail("cannot read the metadata (" + what + ")");
    }
    uint32_t u32(const std::string& what) {
        uint32_t v;
        read(&v, 4, what);
        return v;
    }
    uint64_t u64(const std::string& what) {
        uint64_t v;
        read(&v, 8, what);
        return v;
    }
    std::string string(const std::string& what) {
        const uint64_t n = u64("the length of " + what);
        need(n, what);
        std::string s(static_cast<size_t>(n), '\0');
        read(s.data(), s.size(), what);
        return s;
    }
    void value(uint32_t type, const std::string& key) {
        if (type == GGUF_TYPE_STRING) {
            skip(u64("the length of the value of '" + key + "'"), "the value of '" + key + "'");
        } else {
            skip(scalar_size(type), "the value of '" + key + "'");
        }
    }

    FILE* f_;
    uint64_t size_;
    const GgufFile& file_;
    uint64_t pos_ = 0;
};

}  // namespace

GgufFile::GgufFile(const std::string& path) : path_(path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) throw FileNotFound(path + ": no such file");
        throw ModelError(path + ": cannot access file: " + std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) fail("is a directory, expected a .gguf file");
    file_size_ = static_cast<uint64_t>(st.st_size);

    // Cheap checks first so the common mistakes get a precise message.
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(std::string("cannot open: ") + std::strerror(errno));
    std::unique_ptr<FILE, int (*)(FILE*)> closer(f, std::fclose);
    unsigned char header[kHeaderSize] = {};
    size_t got = std::fread(header, 1, sizeof header, f);
    if (got < 4) fail("file is too small to be a GGUF file (" + std::to_string(file_size_) + " bytes)");
    if (std::memcmp(header, "GGUF", 4) != 0) {
        fail("not a GGUF file (bad magic); pass a .gguf model file as written by llama.cpp's converters");
    }
    if (got < kHeaderSize) fail("truncated GGUF header (" + std::to_string(file_size_) + " bytes)");
    uint32_t version; uint64_t n_tensors, n_kv;
    std::memcpy(&version, header + 4, 4);
    std::memcpy(&n_tensors, header + 8, 8);
    std::memcpy(&n_kv, header + 16, 8);
    if (version < 2 || version > 3) fail("unsupported GGUF version " + std::to_string(version) + " (supported: 2, 3)");
    // Every tensor info needs >= 8+4+8+4+8 bytes and every key/value >= 8+4+1 bytes.
    if (n_tensors > file_size_ / 32) fail("corrupt header: tensor count " + std::to_string(n_tensors) + " cannot fit in the file");
    if (n_kv > file_size_ / 13) fail("corrupt header: key/value count " + std::to_string(n_kv) + " cannot fit in the file");
    MetadataScan(f, file_size_, *this).run(n_tensors, n_kv);
    closer.reset();

    gguf_init_params params{};
    params.no_alloc = true;
    params.ctx = &meta_;
    std::string log;
    {
        LogCapture capture;
        gguf_ = gguf_init_from_file(path.c_str(), params);
        log = capture.text();
    }
    if (!gguf_) {
        fail("malformed GGUF file (the parser rejected it" + (log.empty() ? std::string(")") : "): " + log));
    }

    try {
        check_tensor_data();
    } catch (...) {
        release();  // a throwing constructor runs no destructor
        throw;
    }
}

void GgufFile::release() {
    if (meta_) ggml_free(meta_);
    if (gguf_) gguf_free(gguf_);
    meta_ = nullptr;
    gguf_ = nullptr;
}

void GgufFile::check_tensor_data() const {
    // Tensor data must lie inside the file: the parser does not know the file size.
    const uint64_t base = gguf_get_data_offset(gguf_);
    const int64_t nt = gguf_get_n_tensors(gguf_);
    for (int64_t i = 0; i < nt; ++i) {
        const uint64_t off = gguf_get_tensor_offset(gguf_, i);
        const uint64_t size = gguf_get_tensor_size(gguf_, i);
        if (base > file_size_ || off > file_size_ - base || size > file_size_ - base - off) {
            std::string name = gguf_get_tensor_name(gguf_, i);
            fail("tensor '" + name + "' data (offset " + std::to_string(base + off) + ", " + std::to_string(size) +
                 " bytes) runs past the end of the file (" + std::to_string(file_size_) +
                 " bytes): the file is truncated or corrupt; download it again");
        }
    }
}

GgufFile::~GgufFile() { release(); }

void GgufFile::fail(const std::string& msg) const { throw ModelError(path_ + ": " + msg); }

size_t GgufFile::data_offset() const { return gguf_get_data_offset(gguf_); }

int64_t GgufFile::key_id(const std::string& key) const { return gguf_find_key(gguf_, key.c_str()); }

bool GgufFile::has(const std::string& key) const { return key_id(key) >= 0; }

std::string GgufFile::architecture() const { return find_str("general.architecture").value_or(""); }

std::optional<std::string> GgufFile::find_str(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_STRING) fail("metadata key '" + key + "' is not a string");
    return std::string(gguf_get_val_str(gguf_, id));
}

std::string GgufFile::get_str(const std::string& key) const {
    auto v = find_str(key);
    if (!v) fail("missing metadata key '" + key + "'");
    return *v;
}

bool GgufFile::is_array(const std::string& key) const {
    const int64_t id = key_id(key);
    return id >= 0 && gguf_get_kv_type(gguf_, id) == GGUF_TYPE_ARRAY;
}

std::optional<int64_t> GgufFile::find_int(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    const gguf_type t = gguf_get_kv_type(gguf_, id);
    if (!is_int_type(t)) fail("metadata key '" + key + "' should be an integer, found " + gguf_type_name(t));
    int64_t v = 0;
    if (!int_at(t, gguf_get_val_data(gguf_, id), 0, v)) fail("metadata key '" + key + "' is out of range");
    return v;
}

int64_t GgufFile::get_int(const std::string& key) const {
    auto v = find_int(key);
    if (!v) fail("missing metadata key '" + key + "'");
    return *v;
}

std::optional<float> GgufFile::find_float(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    const gguf_type t = gguf_get_kv_type(gguf_, id);
    if (t == GGUF_TYPE_FLOAT32) return gguf_get_val_f32(gguf_, id);
    if (t == GGUF_TYPE_FLOAT64) return static_cast<float>(gguf_get_val_f64(gguf_, id));
    if (is_int_type(t)) return static_cast<float>(*find_int(key));
    fail("metadata key '" + key + "' should be a number, found " + gguf_type_name(t));
}

float GgufFile::get_float(const std::string& key) const {
    auto v = find_float(key);
    if (!v) fail("missing metadata key '" + key + "'");
    return *v;
}

std::optional<bool> GgufFile::find_bool(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    const gguf_type t = gguf_get_kv_type(gguf_, id);
    if (t == GGUF_TYPE_BOOL) return gguf_get_val_bool(gguf_, id);
    if (is_int_type(t)) return *find_int(key) != 0;
    fail("metadata key '" + key + "' should be a bool, found " + gguf_type_name(t));
}

size_t GgufFile::array_size(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0 || gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY) return 0;
    return gguf_get_arr_n(gguf_, id);
}

int64_t GgufFile::find_array(const std::string& key, int elem, size_t& n) const {
    n = 0;
    const int64_t id = key_id(key);
    if (id < 0) return -1;
    const gguf_type et = static_cast<gguf_type>(elem);
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(gguf_, id) != et) {
        fail("metadata key '" + key + "' must be an array of " + gguf_type_name(et));
    }
    n = gguf_get_arr_n(gguf_, id);
    return id;
}

std::optional<std::vector<int64_t>> GgufFile::find_int_array(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY) {
        // Some converters write a single value where an array is allowed.
        return std::vector<int64_t>{get_int(key)};
    }
    const gguf_type et = gguf_get_arr_type(gguf_, id);
    if (!is_int_type(et)) fail("metadata array '" + key + "' should hold integers, found " + gguf_type_name(et));
    const size_t n = gguf_get_arr_n(gguf_, id);
    const void* data = gguf_get_arr_data(gguf_, id);
    std::vector<int64_t> out(n);
    for (size_t i = 0; i < n; ++i) {
        if (!int_at(et, data, i, out[i])) fail("metadata array '" + key + "' has an out-of-range value");
    }
    return out;
}

std::optional<std::vector<bool>> GgufFile::find_bool_array(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(gguf_, id) != GGUF_TYPE_BOOL) {
        fail("metadata '" + key + "' should be an array of booleans");
    }
    const size_t n = gguf_get_arr_n(gguf_, id);
    const auto* data = static_cast<const int8_t*>(gguf_get_arr_data(gguf_, id));
    std::vector<bool> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = data[i] != 0;
    return out;
}

std::optional<std::vector<float>> GgufFile::find_float_array(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY) return std::vector<float>{get_float(key)};
    const gguf_type et = gguf_get_arr_type(gguf_, id);
    const size_t n = gguf_get_arr_n(gguf_, id);
    std::vector<float> out(n);
    if (et == GGUF_TYPE_FLOAT32) {
        const float* d = static_cast<const float*>(gguf_get_arr_data(gguf_, id));
        out.assign(d, d + n);
    } else if (et == GGUF_TYPE_FLOAT64) {
        const double* d = static_cast<const double*>(gguf_get_arr_data(gguf_, id));
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(d[i]);
    } else if (is_int_type(et)) {
        auto ints = find_int_array(key);
        for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>((*ints)[i]);
    } else {
        fail("metadata array '" + key + "' should hold numbers, found " + gguf_type_name(et));
    }
    return out;
}

std::optional<std::vector<std::string>> GgufFile::find_str_array(const std::string& key) const {
    const int64_t id = key_id(key);
    if (id < 0) return std::nullopt;
    if (gguf_get_kv_type(gguf_, id) != GGUF_TYPE_ARRAY || gguf_get_arr_type(gguf_, id) != GGUF_TYPE_STRING) {
        fail("metadata key '" + key + "' should be an array of strings");
    }
    const size_t n = gguf_get_arr_n(gguf_, id);
    std::vector<std::string> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i) out.emplace_back(gguf_get_arr_str(gguf_, id, i));
    return out;
}

int64_t GgufFile::n_tensors() const { return gguf_get_n_tensors(gguf_); }

ggml_tensor* GgufFile::find_tensor(const std::string& name) const {
    return meta_ ? ggml_get_tensor(meta_, name.c_str()) : nullptr;
}

std::vector<std::string> GgufFile::tensor_names() const {
    std::vector<std::string> out;
    const int64_t n = n_tensors();
    out.reserve(n);
    for (int64_t i = 0; i < n; ++i) out.emplace_back(gguf_get_tensor_name(gguf_, i));
    return out;
}

uint64_t GgufFile::tensor_file_offset(const std::string& name) const {
    const int64_t id = gguf_find_tensor(gguf_, name.c_str());
    if (id < 0) fail("missing tensor '" + name + "'");
    return gguf_get_data_offset(gguf_) + gguf_get_tensor_offset(gguf_, id);
}

std::string file_type_name(int64_t ftype) {
    // Values of llama.cpp's llama_ftype (general.file_type).
    switch (ftype) {
        case 0: return "F32";
        case 1: return "F16";
        case 2: return "Q4_0";
        case 3: return "Q4_1";
        case 7: return "Q8_0";
        case 8: return "Q5_0";
        case 9: return "Q5_1";
        case 10: return "Q2_K";
        case 11: return "Q3_K_S";
        case 12: return "Q3_K_M";
        case 13: return "Q3_K_L";
        case 14: return "Q4_K_S";
        case 15: return "Q4_K_M";
        case 16: return "Q5_K_S";
        case 17: return "Q5_K_M";
        case 18: return "Q6_K";
        case 19: return "IQ2_XXS";
        case 20: return "IQ2_XS";
        case 21: return "Q2_K_S";
        case 22: return "IQ3_XS";
        case 23: return "IQ3_XXS";
        case 24: return "IQ1_S";
        case 25: return "IQ4_NL";
        case 26: return "IQ3_S";
        case 27: return "IQ3_M";
        case 28: return "IQ2_S";
        case 29: return "IQ2_M";
        case 30: return "IQ4_XS";
        case 31: return "IQ1_M";
        case 32: return "BF16";
        case 36: return "TQ1_0";
        case 37: return "TQ2_0";
        case 38: return "MXFP4";
        default: return "unknown(" + std::to_string(ftype) + ")";
    }
}

}  // namespace corehead
