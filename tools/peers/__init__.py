"""llama.cpp as the peer: llama-cpp-python in a child process (llama_cpp_peer) and llama.cpp's
own tools, built from the pinned tree (native_peer)."""
