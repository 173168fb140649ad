"""The `run_peer` fixture: llama.cpp (llama-cpp-python) in a child process, as a pytest plugin
module so that tests/conftest.py and the crash tests' inner pytest runs share it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def run_peer():
    """Runs a request on llama.cpp in a child process (tools/peers/llama_cpp_peer.py). A peer that is
    missing, crashes (SIGILL, SIGSEGV, ...) or hangs skips the calling test with the reason, the
    signal and the host CPU: the suite's result never depends on the peer surviving."""
    from tools.peers import llama_cpp_peer

    def run(request: dict, timeout: float = 600.0) -> dict:
        try:
            return llama_cpp_peer.run(request, timeout=timeout)
        except llama_cpp_peer.PeerUnavailable as e:
            pytest.skip(f"llama-cpp-python 0.3.36 (the llama.cpp peer) is not importable here: {e}")
        except llama_cpp_peer.PeerCrashed as e:
            pytest.skip(str(e))

    return run
