"""Engine.from_pretrained and -hf on a Hugging Face cache folder laid out exactly as
huggingface_hub writes it (models--org--name/{blobs,refs,snapshots}); offline, no network."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed (pip install 'corehead[hub]')")

from corehead import Engine, hub  # noqa: E402
from corehead.cli import main as cli_main  # noqa: E402

DATA = Path(__file__).parent / "data" / "llava"
REPO = "test-org/Tiny-LLaVA-GGUF"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"

# Real fixture GGUFs under the names a quantized repo uses: the f32 model stands in for Q4_K_M,
# the f16 model for Q8_0, so which file got loaded shows in eng.info["file_type"].
FILES = {
    "Tiny-LLaVA-Q4_K_M.gguf": DATA / "model-f32.gguf",
    "Tiny-LLaVA-Q8_0.gguf": DATA / "model-f16.gguf",
    "mmproj-Tiny-LLaVA-f16.gguf": DATA / "mmproj-f16.gguf",
    "mmproj-Tiny-LLaVA-Q8_0.gguf": DATA / "mmproj-f32.gguf",
    "README.md": None,
}


def write_repo(cache: Path, repo_id: str, files: dict, commit: str = COMMIT, ref: str = "main") -> Path:
    """models--org--name/blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>,
    refs/<ref> = commit: huggingface_hub's cache layout."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    snap = repo_dir / "snapshots" / commit
    for name, src in files.items():
        data = src.read_bytes() if src is not None else b"# a model card\n"
        digest = hashlib.sha256(data).hexdigest() if src is not None else hashlib.sha1(data).hexdigest()
        blob = repo_dir / "blobs" / digest
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs" / ref).write_text(commit)
    return snap


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    write_repo(cache, REPO, FILES)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def snap_name(path) -> str:
    """The file name inside the snapshot (the path is the snapshot link, not the blob)."""
    p = Path(path)
    assert p.parent.name == COMMIT and p.parent.parent.name == "snapshots", p
    return p.name


def test_picks_the_default_quant_and_pairs_the_mmproj(hf_cache):
    model, mmproj = hub.resolve(REPO)
    assert snap_name(model) == "Tiny-LLaVA-Q4_K_M.gguf"
    # No Q4_K_M projector: the f16 one is preferred over Q8_0.
    assert snap_name(mmproj) == "mmproj-Tiny-LLaVA-f16.gguf"
    assert Path(model).read_bytes() == (DATA / "model-f32.gguf").read_bytes()


def test_from_pretrained_loads_the_chosen_files(hf_cache):
    with Engine.from_pretrained(REPO, quant="Q8_0", n_threads=1) as eng:
        info = eng.info
        assert info["file_type"] == Engine(DATA / "model-f16.gguf", n_threads=1).info["file_type"]
        assert info["vision"]["projector"] == "mlp"
        # The Q8_0 model takes the Q8_0 projector (the f32 fixture under that name).
        assert info["vision"]["file_type"] == Engine(DATA / "model-f16.gguf", mmproj=DATA / "mmproj-f32.gguf",
                                                      n_threads=1).info["vision"]["file_type"]
        assert eng.generate("USER: hi ASSISTANT:", max_tokens=2) is not None
    with Engine.from_pretrained(REPO, n_threads=1) as eng:  # Q4_K_M: the f32 stand-in
        assert eng.info["file_type"] == Engine(DATA / "model-f32.gguf", n_threads=1).info["file_type"]


def test_quant_match_is_case_insensitive_and_whole_token(hf_cache):
    model, _ = hub.resolve(REPO, quant="q8_0")
    assert snap_name(model) == "Tiny-LLaVA-Q8_0.gguf"
    # Q4_K is a prefix of Q4_K_M, not a match.
    with pytest.raises(hub.HubError, match="no Q4_K model file; it has: Q4_K_M, Q8_0"):
        hub.resolve(REPO, quant="Q4_K")
    assert hub.has_quant("x-Q4_K_M.gguf", "Q4_K_M") and not hub.has_quant("x-IQ4_K_M.gguf", "Q4_K_M")
    assert not hub.has_quant("x-BF16.gguf", "F16") and hub.has_quant("x.F16.gguf", "f16")


def test_missing_quant_is_a_clear_error(hf_cache):
    with pytest.raises(hub.HubError) as e:
        Engine.from_pretrained(REPO, quant="Q5_K_M")
    msg = str(e.value)
    assert "no Q5_K_M model file" in msg and "Q4_K_M, Q8_0" in msg and f"-hf {REPO}:QUANT" in msg


def test_missing_file_and_missing_repo_are_clear_errors(hf_cache):
    with pytest.raises(hub.HubError, match="has no file 'nope.gguf'"):
        hub.resolve(REPO, filename="nope.gguf")
    with pytest.raises(hub.HubError, match="not in the Hugging Face cache .*HF_HUB_OFFLINE"):
        Engine.from_pretrained("test-org/Not-Downloaded-GGUF")
    with pytest.raises(hub.HubError, match="org/name"):
        hub.resolve("no-slash")


def test_listed_file_whose_blob_is_missing(hf_cache):
    # A snapshot link whose blob was deleted (an interrupted download): hf_hub_download finds
    # nothing in the cache; the error names the file.
    repo_dir = hf_cache / ("models--" + REPO.replace("/", "--"))
    target = (repo_dir / "snapshots" / COMMIT / "Tiny-LLaVA-Q8_0.gguf").resolve()
    target.unlink()
    with pytest.raises(hub.HubError, match="Tiny-LLaVA-Q8_0.gguf"):
        hub.resolve(REPO, quant="Q8_0")


def test_explicit_filename_mmproj_and_no_mmproj(hf_cache):
    model, mmproj = hub.resolve(REPO, filename="Tiny-LLaVA-Q8_0.gguf", mmproj="mmproj-Tiny-LLaVA-f16.gguf")
    assert (snap_name(model), snap_name(mmproj)) == ("Tiny-LLaVA-Q8_0.gguf", "mmproj-Tiny-LLaVA-f16.gguf")
    model, mmproj = hub.resolve(REPO, mmproj=False)
    assert mmproj is None
    with Engine.from_pretrained(REPO, mmproj=False, n_threads=1) as eng:
        assert eng.info["vision"] is None
    # A given model file is paired by its own quant name.
    _, mmproj = hub.resolve(REPO, filename="Tiny-LLaVA-Q8_0.gguf")
    assert snap_name(mmproj) == "mmproj-Tiny-LLaVA-Q8_0.gguf"


def test_revision_and_hf_hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "elsewhere"
    write_repo(cache, REPO, {"Tiny-LLaVA-Q4_K_M.gguf": DATA / "model-f32.gguf"}, commit=OLD_COMMIT, ref="v1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, mmproj = hub.resolve(REPO, revision="v1")
    assert Path(model).parent.name == OLD_COMMIT and mmproj is None  # a text-only snapshot
    model, _ = hub.resolve(REPO, revision=OLD_COMMIT)  # a commit hash directly
    assert Path(model).parent.name == OLD_COMMIT
    with pytest.raises(hub.HubError, match="revision main"):
        hub.resolve(REPO)  # no refs/main in this cache


def test_auto_quant(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    write_repo(cache, "org/Only-Q8-GGUF", {"m-Q8_0.gguf": DATA / "model-f16.gguf",
                                           "m-F16.gguf": DATA / "model-f32.gguf"})
    write_repo(cache, "org/Unnamed-GGUF", {"model.gguf": DATA / "model-f32.gguf"})
    write_repo(cache, "org/Split-GGUF", {"m-Q4_K_M-00001-of-00002.gguf": DATA / "model-f32.gguf",
                                         "m-Q4_K_M-00002-of-00002.gguf": DATA / "model-f16.gguf"})
    write_repo(cache, "org/Safetensors", {"model.safetensors": DATA / "ref.npz"})
    write_repo(cache, "org/Llava-v1.5-GGUF", {"llava-v1.5-Q4_K_M.gguf": DATA / "model-f32.gguf",
                                             "llava-v1.5-mmproj-model-f16.gguf": DATA / "mmproj-f16.gguf"})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Path(hub.resolve("org/Only-Q8-GGUF", quant=None)[0]).name == "m-Q8_0.gguf"  # Q8_0 before F16
    assert Path(hub.resolve("org/Unnamed-GGUF", quant=None)[0]).name == "model.gguf"
    # "mmproj" inside the name (not only as a prefix) marks the projector, as in llama.cpp.
    model, mmproj = hub.resolve("org/Llava-v1.5-GGUF")
    assert (Path(model).name, Path(mmproj).name) == ("llava-v1.5-Q4_K_M.gguf", "llava-v1.5-mmproj-model-f16.gguf")
    with pytest.raises(hub.HubError, match="split into several files.*llama-gguf-split"):
        hub.resolve("org/Split-GGUF")
    with pytest.raises(hub.HubError, match="no GGUF model file.*convert"):
        hub.resolve("org/Safetensors")


def test_cli_hf(hf_cache, capsys):
    assert cli_main(["info", "-hf", f"{REPO}:Q8_0", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["model"]["file_type"] == Engine(DATA / "model-f16.gguf", n_threads=1).info["file_type"]
    assert facts["vision"]["projector"] == "mlp"
    rc = cli_main(["run", "-hf", REPO, "-p", "USER: hi ASSISTANT:", "-n", "2", "-t", "1"])
    assert rc == 0
    rc = cli_main(["run", "-hf", f"{REPO}:Q2_K", "-p", "x", "-n", "1"])
    assert rc == 1 and "no Q2_K model file" in capsys.readouterr().err


def test_cli_needs_a_model(capsys):
    with pytest.raises(SystemExit):
        cli_main(["run", "-p", "x"])
    assert "-hf" in capsys.readouterr().err


def test_without_huggingface_hub(hf_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"corehead\[hub\]"):
        Engine.from_pretrained(REPO)


def test_cli_serve_hf(hf_cache, monkeypatch):
    """`corehead serve -hf REPO:QUANT` serves the files `run -hf` picks (the server itself is
    tests/test_serve.py's; here uvicorn is replaced by a recorder)."""
    pytest.importorskip("fastapi")
    import corehead.serve

    seen = {}
    monkeypatch.setattr(corehead.serve, "serve", lambda **kw: seen.update(kw))
    assert cli_main(["serve", "-hf", f"{REPO}:Q8_0", "--port", "9"]) == 0
    assert snap_name(seen["model"]) == "Tiny-LLaVA-Q8_0.gguf"
    assert snap_name(seen["mmproj"]) == "mmproj-Tiny-LLaVA-Q8_0.gguf"
    assert seen["port"] == 9 and seen["host"] == "127.0.0.1"
