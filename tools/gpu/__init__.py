"""The GPU check (tools/gpu_check.sh): parity of a GPU backend against the committed transformers
references (tools/gpu/parity.py) and GPU speed against llama.cpp's CUDA build (tools/gpu/bench.py)."""
