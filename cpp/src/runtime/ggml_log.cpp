#include "runtime/ggml_log.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "ggml.h"

namespace corehead {

namespace {

thread_local std::string* t_capture = nullptr;

bool verbose() {
    static const bool v = [] {
        const char* e = std::getenv("COREHEAD_VERBOSE");
        return e && *e && *e != '0';
    }();
    return v;
}

void log_callback(ggml_log_level level, const char* text, void*) {
    if (t_capture && level >= GGML_LOG_LEVEL_WARN) t_capture->append(text);
    if (verbose()) std::fputs(text, stderr);
}

}  // namespace

void install_ggml_log() {
    static std::once_flag once;
    std::call_once(once, [] { ggml_log_set(log_callback, nullptr); });
}

LogCapture::LogCapture() : previous_(t_capture) {
    install_ggml_log();
    t_capture = &buffer_;
}

LogCapture::~LogCapture() { t_capture = previous_; }

std::string LogCapture::text() const {
    std::string s = buffer_;
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    // Keep the message short: the last few lines carry the reason.
    const size_t max_len = 600;
    if (s.size() > max_len) s = "..." + s.substr(s.size() - max_len);
    for (char& c : s) if (c == '\n') c = ' ';
    return s;
}

}  // namespace corehead
