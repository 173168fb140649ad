"""Shared fixtures. Tests need no torch: references come from llama.cpp's files, the gguf
package, numpy re-computations, or the committed transformers outputs in tests/data.

The repository root is on sys.path (pyproject.toml: [tool.pytest.ini_options] pythonpath), so
tests import the developer tools as `tools.…` and the helpers here as `tests.…`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.peer_fixture import run_peer  # noqa: F401  (the llama.cpp peer in a child process)


@pytest.fixture(scope="session")
def llama_cpp_dir() -> Path:
    """The llama.cpp tree of the pinned tarball (vocab test vectors, templates, converter)."""
    env = os.environ.get("COREHEAD_LLAMA_CPP_DIR")
    if env:
        return Path(env)
    from tools.build.fetch_ggml import llama_cpp_tree

    return llama_cpp_tree()


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def llama_model(synthetic_dir) -> Path:
    from tools.fixtures.synthetic_gguf import write_text_model

    return write_text_model(synthetic_dir / "llama.gguf", arch="llama")


@pytest.fixture(scope="session")
def mlp_mmproj(synthetic_dir) -> Path:
    from tools.fixtures.synthetic_gguf import write_mmproj

    return write_mmproj(synthetic_dir / "mmproj-mlp.gguf", projector="mlp", n_out=64)


@pytest.fixture(scope="module")
def toy_engine(request):
    """The embedded toy VLM (Engine.toy) for a module, with the module's TOY_THREADS (default 2)."""
    from corehead import Engine

    with Engine.toy(n_threads=getattr(request.module, "TOY_THREADS", 2)) as eng:
        yield eng


def pytest_report_header(config):
    """The backend every Engine(backend="auto") of the suite gets: COREHEAD_BACKEND, when set
    (tools/gpu_check.sh runs the suite so on a GPU), else a compiled-in GPU, else the CPU."""
    from corehead import _core

    env = os.environ.get("COREHEAD_BACKEND")
    return f"corehead backends compiled in: {', '.join(_core.compiled_backends())}; " \
           f"COREHEAD_BACKEND={env or '(unset: auto)'}"
