"""The typed surface: the installed package ships py.typed and the stubgen-generated _core.pyi, and
``mypy --strict`` accepts tests/typing_usage.py (a user's view of the public API) against it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

import corehead

HERE = Path(__file__).resolve().parent
USAGE = HERE / "typing_usage.py"
COMMITTED_STUB = HERE.parent / "python" / "corehead" / "_core.pyi"

# Wrong on purpose: with the stubs mypy must see these types (an untyped module would let them pass).
MISUSE = """
from corehead import _core

_core.inspect_model(3)
n: str = _core.inspect_model("m.gguf").n_layer
_core.SparseOptions([(0, 0)])
"""


def _installed(name: str) -> Path:
    return Path(str(resources.files("corehead").joinpath(name)))


def test_the_package_ships_its_type_information():
    assert _installed("py.typed").is_file()
    stub = _installed("_core.pyi")
    assert stub.is_file()
    text = stub.read_text()
    for name in ("class Engine", "class TextInfo", "class KVStats", "class AttentionTaps", "def gguf_summary"):
        assert name in text


def test_the_committed_stub_is_the_generated_one():
    stub = _installed("_core.pyi")
    if not COMMITTED_STUB.is_file() or stub.resolve() == COMMITTED_STUB.resolve():
        pytest.skip("no separate installed copy to compare with")
    assert stub.read_text() == COMMITTED_STUB.read_text(), (
        "python/corehead/_core.pyi is stale: copy the _core.pyi that the build generated "
        f"({stub}) over it")


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed (pip install '.[test]')")
def test_mypy_strict_accepts_the_usage_file_and_sees_the_stubs(tmp_path):
    misuse = tmp_path / "misuse.py"
    misuse.write_text(MISUSE)
    # cwd outside the repository: mypy resolves corehead from the installed package only.
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir",
                        str(tmp_path / "cache"), str(USAGE), str(misuse)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    errors = [ln.split(":") for ln in r.stdout.splitlines() if ": error:" in ln]
    assert not [e for e in errors if Path(e[0]).name != misuse.name], r.stdout + r.stderr
    assert [e[1] for e in errors] == ["4", "5", "6"], r.stdout + r.stderr


def test_the_usage_file_runs():
    r = subprocess.run([sys.executable, str(USAGE)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert corehead.__version__ in r.stdout
