// A GGUF file opened for reading, with checked accessors.
//
// ggml's gguf parser returns nullptr on malformed files, but its typed getters
// GGML_ASSERT on a wrong type or index. Everything here checks first and throws
// corehead::ModelError with the file name, so bad files never abort the process.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

struct gguf_context;
struct ggml_context;
struct ggml_tensor;

namespace corehead {

class GgufFile {
public:
    // Opens and parses metadata (tensor data is not read). Throws FileNotFound / ModelError.
    explicit GgufFile(const std::string& path);
    ~GgufFile();
    GgufFile(const GgufFile&) = delete;
    GgufFile& operator=(const GgufFile&) = delete;

    const std::string& path() const { return path_; }
    uint64_t file_size() const { return file_size_; }
    size_t data_offset() const;
    gguf_context* gguf() const { return gguf_; }
    // Context holding one metadata-only ggml_tensor per GGUF tensor (no data).
    ggml_context* meta() const { return meta_; }

    // general.architecture ("" when absent).
    std::string architecture() const;

    bool has(const std::string& key) const;
    bool is_array(const std::string& key) const;  // false when absent
    std::string get_str(const std::string& key) const;
    std::optional<std::string> find_str(const std::string& key) const;
    // Any integer type (converters differ) as int64; throws when missing or out of range.
    int64_t get_int(const std::string& key) const;
    std::optional<int64_t> find_int(const std::string& key) const;
    float get_float(const std::string& key) const;                   // f32/f64/int
    std::optional<float> find_float(const std::string& key) const;
    std::optional<bool> find_bool(const std::string& key) const;
    // Arrays. find_* return nullopt when the key is missing; throw on a wrong element type.
    std::optional<std::vector<int64_t>> find_int_array(const std::string& key) const;
    std::optional<std::vector<float>> find_float_array(const std::string& key) const;
    std::optional<std::vector<bool>> find_bool_array(const std::string& key) const;
    std::optional<std::vector<std::string>> find_str_array(const std::string& key) const;
    size_t array_size(const std::string& key) const;  // 0 when missing or not an array
    // Key id of an array whose elements have type `elem` (a gguf_type), -1 when absent; throws
    // when present with another type. For zero-copy reads with gguf_get_arr_* on gguf().
    int64_t find_array(const std::string& key, int elem, size_t& n) const;

    int64_t n_tensors() const;
    ggml_tensor* find_tensor(const std::string& name) const;  // nullptr when absent
    std::vector<std::string> tensor_names() const;
    // Absolute file offset of a tensor's data.
    uint64_t tensor_file_offset(const std::string& name) const;

    // Throws ModelError("<path>: <msg>").
    [[noreturn]] void fail(const std::string& msg) const;

private:
    int64_t key_id(const std::string& key) const;  // -1 when absent
    void check_tensor_data() const;
    void release();
    std::string path_;
    uint64_t file_size_ = 0;
    gguf_context* gguf_ = nullptr;
    ggml_context* meta_ = nullptr;
};

// Human-readable name of a general.file_type value (e.g. "Q4_K_M").
std::string file_type_name(int64_t ftype);

}  // namespace corehead
