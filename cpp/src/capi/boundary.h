// The C API's boundary (cpp/include/corehead/corehead.h): no C++ exception crosses it. Every
// entry runs its body inside guarded(), which maps corehead's exceptions (error.h) and the
// standard ones to a corehead_status and records the message in a thread-local buffer that
// corehead_last_error() returns.
#pragma once
#include <exception>
#include <new>
#include <string>

#include "corehead/corehead.h"
#include "corehead/error.h"

namespace corehead::capi {

// A caller's buffer is too short (COREHEAD_ERR_BUFFER_TOO_SMALL); *n_out is already set.
struct BufferTooSmall : Error {
    using Error::Error;
};

// Records `message` as the calling thread's last error and returns `status`. Never throws or
// allocates (a fixed buffer; long messages are truncated).
corehead_status fail(corehead_status status, const char* message) noexcept;
inline corehead_status fail(corehead_status status, const std::string& message) noexcept {
    return fail(status, message.c_str());
}
const char* last_error() noexcept;

// Maps the exception being handled to a status (and records its message).
corehead_status fail_current_exception() noexcept;

// Runs body() -> corehead_status; any exception becomes an error status.
template <class Body>
corehead_status guarded(Body&& body) noexcept {
    try {
        return body();
    } catch (...) {
        return fail_current_exception();
    }
}

// Throws InputError("<what> is NULL") when p is NULL: the message names the argument.
inline void require(const void* p, const char* what) {
    if (!p) throw InputError(std::string(what) + " is NULL");
}

}  // namespace corehead::capi
