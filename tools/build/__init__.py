"""Build helpers: the pinned ggml / llama.cpp source, generated tables, CUDA and sanitizer builds."""
