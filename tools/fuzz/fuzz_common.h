// Shared helpers for the libFuzzer targets.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "corehead/engine.h"  // inspect_mmproj

namespace fuzz {

// The input as a file (memfd, never on disk): corehead opens models by path.
class MemFile {
public:
    MemFile(const uint8_t* data, size_t size) {
        fd_ = memfd_create("fuzz.gguf", 0);
        if (fd_ < 0) { std::perror("memfd_create"); std::abort(); }
        size_t done = 0;
        while (done < size) {
            const ssize_t w = ::write(fd_, data + done, size - done);
            if (w <= 0) { std::perror("write"); std::abort(); }
            done += static_cast<size_t>(w);
        }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    ~MemFile() { ::close(fd_); }
    MemFile(const MemFile&) = delete;
    MemFile& operator=(const MemFile&) = delete;
    const std::string& path() const { return path_; }

private:
    int fd_ = -1;
    std::string path_;
};

// An invariant the code promises was broken: a finding even without a sanitizer report.
#define FUZZ_CHECK(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "FUZZ_CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            std::abort();                                                                  \
        }                                                                                  \
    } while (0)

// The fixture language model of each projector type (tests/data/<family>/{model,mmproj}-f16.gguf,
// or the folders under $COREHEAD_FUZZ_DATA), so that an mmproj input is loaded beside the model
// it belongs to. Aborts when there is none: the target would fuzz nothing.
inline std::map<std::string, std::string> fixture_models() {
    namespace fs = std::filesystem;
    const char* env = std::getenv("COREHEAD_FUZZ_DATA");
    const fs::path root = env ? env : COREHEAD_FIXTURES;
    std::map<std::string, std::string> models;
    for (const auto& dir : fs::directory_iterator(root)) {
        const fs::path mmproj = dir.path() / "mmproj-f16.gguf", model = dir.path() / "model-f16.gguf";
        if (!fs::exists(mmproj) || !fs::exists(model)) continue;
        models[corehead::inspect_mmproj(mmproj.string()).projector] = model.string();
    }
    if (models.empty()) {
        std::fprintf(stderr, "no fixture model + mmproj pairs under %s (set COREHEAD_FUZZ_DATA)\n", root.c_str());
        std::abort();
    }
    return models;
}

}  // namespace fuzz
