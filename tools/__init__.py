"""Developer tools of corehead (not part of the installed package). Run each from the repository
root as a module, e.g. `python -m tools.bench text` or `python -m tools.fixtures.make llama`:

- tools.build: fetch_ggml (the pinned ggml / llama.cpp source), gen_unicode_tables, CUDA and
  sanitizer build checks (shell scripts)
- tools.fixtures: the tiny test models of tests/data, one recipe per family (registry in
  tools/fixtures/__init__.py), synthetic_gguf (GGUF files written from numpy)
- tools.refs: transformers / llama.cpp reference files for the tests (ablation, sparse, chat, peer)
- tools.bench: the benchmarks (`python -m tools.bench text|vision|rank|sparse|ablate`)
- tools.toy: training and studying the embedded toy VLM
- tools.peers: llama.cpp as the peer (llama-cpp-python in a child process, llama.cpp's own tools)
- tools.fuzz: libFuzzer targets and their seed corpora
"""
