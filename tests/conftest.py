"""Shared fixtures. Tests need no torch: references come from llama.cpp's files, the gguf
package, numpy re-computations, or the committed transformers outputs in tests/data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))  # synthetic_gguf, fetch_ggml, llama_cpp_peer

from peer_fixture import run_peer  # noqa: E402,F401  (the llama.cpp peer in a child process)


@pytest.fixture(scope="session")
def llama_cpp_dir() -> Path:
    """The llama.cpp tree of the pinned tarball (vocab test vectors, templates, converter)."""
    env = os.environ.get("COREHEAD_LLAMA_CPP_DIR")
    if env:
        return Path(env)
    out = subprocess.run([sys.executable, str(REPO / "tools" / "fetch_ggml.py"), "--with-llama-cpp"],
                         check=True, capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def llama_model(synthetic_dir) -> Path:
    from synthetic_gguf import write_text_model

    return write_text_model(synthetic_dir / "llama.gguf", arch="llama")


@pytest.fixture(scope="session")
def mlp_mmproj(synthetic_dir) -> Path:
    from synthetic_gguf import write_mmproj

    return write_mmproj(synthetic_dir / "mmproj-mlp.gguf", projector="mlp", n_out=64)
