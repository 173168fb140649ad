"""A crash of the llama.cpp peer can never take the suite down (tools/peers/llama_cpp_peer.py): the
peer runs in a child process, and a test whose peer dies is skipped with the signal and the CPU
in its reason. Checked here by killing the child on purpose, inside a real inner pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.peers import llama_cpp_peer

REPO = Path(__file__).resolve().parent.parent

INNER_TEST = '''
def test_compares_with_the_peer(run_peer):
    run_peer({{"ops": [{{"op": "raise", "signal": "{sig}"}}]}})
    raise AssertionError("unreachable: the peer child was killed")


def test_corehead_side_still_runs():
    assert 1 + 1 == 2
'''


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV", "SIGABRT"])
def test_peer_signal_raises_peer_crashed(sig):
    with pytest.raises(llama_cpp_peer.PeerCrashed) as e:
        llama_cpp_peer.run({"ops": [{"op": "raise", "signal": sig}]})
    assert sig in str(e.value)
    assert llama_cpp_peer.host_cpu() in str(e.value)


@pytest.mark.parametrize("sig", ["SIGILL", "SIGSEGV"])
def test_killed_peer_leaves_the_suite_green_with_the_reason(tmp_path, sig):
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(sig=sig))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.peer_fixture", "-rs", "-p", "no:cacheprovider",
                           str(tmp_path / "test_inner.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 1 skipped" in out, out
    skip_line = next(line for line in out.splitlines() if line.startswith("SKIPPED"))
    assert f"died with {sig}" in skip_line and llama_cpp_peer.host_cpu() in skip_line, skip_line


def test_host_cpu_names_the_flags():
    text = llama_cpp_peer.host_cpu()
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    for f in ("amx_int8", "amx_tile", "avx512f", "avx2"):
        assert (f in text.rsplit("(", 1)[-1].rstrip(")").split()) == (f in flags)


def test_hung_peer_is_a_crash_not_a_hang(monkeypatch):
    # A child that never answers: the timeout turns into PeerCrashed, not a stuck suite.
    def slow_run(*args, **kwargs):
        raise subprocess.TimeoutExpired(cmd="peer", timeout=kwargs.get("timeout", 0))

    monkeypatch.setattr(llama_cpp_peer.subprocess, "run", slow_run)
    with pytest.raises(llama_cpp_peer.PeerCrashed, match="hung"):
        llama_cpp_peer.run({"ops": []}, timeout=1)

