// Exceptions thrown by libcorehead. The Python bindings map them to
// corehead.ModelError (ValueError), ValueError, FileNotFoundError, etc.
// Rule: every user-reachable failure throws one of these *before* any ggml call that
// could GGML_ASSERT; nothing reachable from user input may abort the process.
#pragma once
#include <stdexcept>
#include <string>

namespace corehead {

// Base of all corehead errors.
struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// A model/mmproj file is missing, malformed, unsupported or inconsistent.
struct ModelError : Error {
    using Error::Error;
};

// The file does not exist (maps to FileNotFoundError).
struct FileNotFound : ModelError {
    using ModelError::ModelError;
};

// An argument from the caller is invalid (maps to ValueError).
struct InputError : Error {
    using Error::Error;
};

// The request does not fit in the context window (maps to corehead.ContextOverflowError).
struct ContextOverflow : InputError {
    using InputError::InputError;
};

}  // namespace corehead
