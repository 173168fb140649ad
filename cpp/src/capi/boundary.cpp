#include "capi/boundary.h"

#include <cstdio>
#include <stdexcept>

namespace corehead::capi {

namespace {
thread_local char t_last_error[2048] = "";

// fail() with the message framed by a prefix and a suffix, still without allocating.
corehead_status fail_framed(corehead_status status, const char* prefix, const char* message, const char* suffix) noexcept {
    std::snprintf(t_last_error, sizeof t_last_error, "%s%s%s", prefix, message ? message : "", suffix);
    return status;
}
}  // namespace

corehead_status fail(corehead_status status, const char* message) noexcept {
    std::snprintf(t_last_error, sizeof t_last_error, "%s", message ? message : "");
    return status;
}

const char* last_error() noexcept { return t_last_error; }

corehead_status fail_current_exception() noexcept {
    // Most specific first: ContextOverflow is an InputError, FileNotFound a ModelError.
    try {
        throw;
    } catch (const BufferTooSmall& e) {
        return fail(COREHEAD_ERR_BUFFER_TOO_SMALL, e.what());
    } catch (const ContextOverflow& e) {
        return fail(COREHEAD_ERR_CONTEXT_OVERFLOW, e.what());
    } catch (const InputError& e) {
        return fail(COREHEAD_ERR_INVALID_ARGUMENT, e.what());
    } catch (const FileNotFound& e) {
        return fail(COREHEAD_ERR_FILE_NOT_FOUND, e.what());
    } catch (const ModelError& e) {
        return fail(COREHEAD_ERR_MODEL, e.what());
    } catch (const std::bad_alloc&) {
        return fail(COREHEAD_ERR_OUT_OF_MEMORY, "out of memory: try a smaller model, n_ctx or request");
    } catch (const std::length_error& e) {  // a std container asked for more than it can hold
        return fail_framed(COREHEAD_ERR_OUT_OF_MEMORY, "out of memory (", e.what(), "): the request is too large");
    } catch (const Error& e) {
        return fail(COREHEAD_ERR_RUNTIME, e.what());
    } catch (const std::exception& e) {
        return fail_framed(COREHEAD_ERR_RUNTIME, "internal error: ", e.what(), " (please report it)");
    } catch (...) {
        return fail(COREHEAD_ERR_RUNTIME, "internal error: an unknown exception (please report it)");
    }
}

}  // namespace corehead::capi
