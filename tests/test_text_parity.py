"""Text decoding against transformers: logits and greedy continuations of the committed
tiny random-weight fixtures (python -m tools.fixtures.make), and SmolLM2 real weights vs llama.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from corehead import ContextOverflowError, Engine
from tests.families import TEXT

DATA = Path(__file__).parent / "data"
PROMPTS = ["", "p1_", "p2_", "p3_"]


def ref(family: str):
    return np.load(DATA / family / "ref.npz")


@pytest.fixture(scope="module", params=TEXT)
def family(request):
    return request.param


def prompts_of(r):
    return [p for p in PROMPTS if p + "prompt_ids" in r]


def test_f32_logits_match_transformers(family):
    r = ref(family)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        for p in prompts_of(r):
            got = eng.logits(r[p + "prompt_ids"], all_positions=True)
            want = r[p + "logits_all"]
            assert got.shape == want.shape and got.dtype == np.float32
            rel = np.abs(got - want).max() / np.abs(want).max()
            assert rel <= 1e-3, f"{family}/{p or 'p0'}: max|Δ| = {rel:.2e} × max|logit|"
            # The last row alone runs a 1-row matmul kernel; all rows may use llamafile's sgemm.
            last = eng.logits(r[p + "prompt_ids"])
            np.testing.assert_allclose(last, got[-1], rtol=0, atol=1e-5 * np.abs(want).max())


def test_f16_argmax_matches_at_every_position(family):
    r = ref(family)
    with Engine(DATA / family / "model-f16.gguf", n_threads=2) as eng:
        for p in prompts_of(r):
            got = eng.logits(r[p + "prompt_ids"], all_positions=True)
            np.testing.assert_array_equal(got.argmax(-1), r[p + "logits_all"].argmax(-1))


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_greedy_continuations_match_transformers(family, dtype):
    r = ref(family)
    with Engine(DATA / family / f"model-{dtype}.gguf", n_threads=2) as eng:
        for p in prompts_of(r):
            want = r[p + "greedy_ids"].tolist()
            got = eng.generate_ids(r[p + "prompt_ids"], max_tokens=len(want), stop_at_eog=False)
            assert got == want, f"{family}/{dtype}/{p or 'p0'}"


def test_prefill_in_small_batches_equals_one_batch(family):
    r = ref(family)
    ids = r["p1_prompt_ids"]
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as one, \
         Engine(DATA / family / "model-f32.gguf", n_threads=2, n_batch=7) as chunked:
        np.testing.assert_allclose(chunked.logits(ids, all_positions=True), one.logits(ids, all_positions=True),
                                   rtol=0, atol=1e-4)


def test_streaming_yields_the_same_ids(family):
    r = ref(family)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        want = r["greedy_ids"].tolist()
        assert list(eng.stream_ids(r["prompt_ids"], max_tokens=len(want), stop_at_eog=False)) == want
        # Stopping the consumer early stops generation cleanly; the engine stays usable.
        it = eng.stream_ids(r["prompt_ids"], max_tokens=len(want), stop_at_eog=False)
        assert next(it) == want[0]
        it.close()
        assert eng.generate_ids(r["prompt_ids"], max_tokens=3, stop_at_eog=False) == want[:3]


def test_sampling_is_seeded_and_respects_top_k(family):
    r = ref(family)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        ids = r["prompt_ids"]
        a = eng.generate_ids(ids, max_tokens=12, temperature=1.5, seed=7, stop_at_eog=False)
        b = eng.generate_ids(ids, max_tokens=12, temperature=1.5, seed=7, stop_at_eog=False)
        assert a == b
        # top_k=1 is greedy whatever the temperature.
        greedy = eng.generate_ids(ids, max_tokens=8, stop_at_eog=False)
        assert eng.generate_ids(ids, max_tokens=8, temperature=2.0, top_k=1, seed=3, stop_at_eog=False) == greedy
        # The first sampled token always comes from the top-5 of the reference logits.
        top5 = set(np.argsort(r["logits_last"])[-5:].tolist())
        for seed in range(10):
            assert eng.generate_ids(ids, max_tokens=1, temperature=1.0, top_k=5, seed=seed)[0] in top5


def test_bad_text_input(family):
    r = ref(family)
    with Engine(DATA / family / "model-f32.gguf", n_threads=1, n_ctx=32) as eng:
        n_vocab = eng.info["n_vocab"]
        with pytest.raises(ValueError, match="empty"):
            eng.logits([])
        with pytest.raises(ValueError, match="out of range"):
            eng.logits([n_vocab])
        with pytest.raises(ValueError, match="out of range"):
            eng.logits([-1])
        with pytest.raises(TypeError):
            eng.logits([1.5])
        with pytest.raises(ContextOverflowError, match="larger n_ctx"):
            eng.logits(list(r["p1_prompt_ids"]))  # 50 tokens > 32
        for bad in (dict(temperature=-1), dict(top_p=0.0), dict(top_p=1.5), dict(min_p=1.0), dict(top_k=-2),
                    dict(repeat_penalty=0.0), dict(max_tokens=-1), dict(seed=-1)):
            with pytest.raises(ValueError):
                eng.generate_ids(r["prompt_ids"], **bad)
        # Generation stops at the end of the context instead of reading past it.
        out = eng.generate_ids(r["prompt_ids"], max_tokens=100, stop_at_eog=False)
        assert len(r["prompt_ids"]) + len(out) <= 33


def test_ctrl_c_interrupts_generation_and_engine_stays_usable():
    import os
    import signal
    import threading
    import time

    r = ref("llama")
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=1, n_ctx=8192) as eng:
        timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        start = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            eng.generate_ids(r["prompt_ids"], max_tokens=8000, stop_at_eog=False)
        timer.join()
        assert time.perf_counter() - start < 30
        want = r["greedy_ids"].tolist()
        assert eng.generate_ids(r["prompt_ids"], max_tokens=len(want), stop_at_eog=False) == want
