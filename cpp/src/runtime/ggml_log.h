// Routes ggml's log output: quiet by default (COREHEAD_VERBOSE=1 prints everything), and
// capturable so a parser error message can go into the exception we raise.
#pragma once
#include <string>

namespace corehead {

// Installs corehead's ggml log callback (idempotent, thread-safe).
void install_ggml_log();

// While alive, ggml log lines emitted on this thread are collected.
class LogCapture {
public:
    LogCapture();
    ~LogCapture();
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;
    std::string text() const;  // collected lines, trimmed

private:
    std::string* previous_;
    std::string buffer_;
};

}  // namespace corehead
