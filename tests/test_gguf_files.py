"""GGUF reading and validation: right facts for valid files (checked against the gguf
package's own reader), a clear exception for every kind of bad file, never an abort."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import gguf
import numpy as np
import pytest

import corehead
from corehead import Engine, ModelError
from corehead.cli import main as cli_main
from tests.families import VISION


def reader_value(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


# --- valid files ------------------------------------------------------------------------------


def test_version_is_set():
    assert corehead.__version__ and corehead.__version__ != "0.0.0+local"


def test_inspect_vocab_only_file_matches_gguf_reader(llama_cpp_dir):
    path = llama_cpp_dir / "models" / "ggml-vocab-llama-spm.gguf"
    facts = corehead.inspect(path)["model"]
    r = gguf.GGUFReader(str(path))
    assert facts["arch"] == reader_value(r, "general.architecture") == "llama"
    assert facts["n_layer"] == reader_value(r, "llama.block_count")
    assert facts["n_head"] == reader_value(r, "llama.attention.head_count")
    assert facts["n_head_kv"] == reader_value(r, "llama.attention.head_count_kv")
    assert facts["n_embd"] == reader_value(r, "llama.embedding_length")
    assert facts["n_ctx_train"] == reader_value(r, "llama.context_length")
    assert facts["n_tokens"] == len(r.fields["tokenizer.ggml.tokens"].data)
    assert facts["n_vocab"] == reader_value(r, "llama.vocab_size")
    assert facts["vocab_only"] is True and facts["n_tensors"] == 0
    assert facts["tokenizer"] == "llama"


@pytest.mark.parametrize("name", ["qwen2", "llama-bpe", "gpt-2", "phi-3"])
def test_inspect_other_vocab_files(llama_cpp_dir, name):
    path = llama_cpp_dir / "models" / f"ggml-vocab-{name}.gguf"
    r = gguf.GGUFReader(str(path))
    arch = reader_value(r, "general.architecture")
    if arch not in ("llama", "qwen2", "qwen2vl", "gemma3"):
        # A model architecture corehead cannot run: a clear error, not a crash.
        with pytest.raises(ModelError, match=f"not supported yet: {arch}"):
            corehead.inspect(path)
        return
    facts = corehead.inspect(path)["model"]
    assert facts["arch"] == arch
    assert facts["n_tokens"] == len(r.fields["tokenizer.ggml.tokens"].data)
    assert facts["tokenizer"] == reader_value(r, "tokenizer.ggml.model")
    assert facts["tokenizer_pre"] == reader_value(r, "tokenizer.ggml.pre")


def test_cli_info_on_vocab_file(llama_cpp_dir, capsys):
    path = llama_cpp_dir / "models" / "ggml-vocab-llama-spm.gguf"
    assert cli_main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "architecture" in out and "llama" in out
    assert "32000" in out  # vocabulary from llama.vocab_size, checked against the reader above


def test_engine_loads_synthetic_model_and_mmproj(llama_model, mlp_mmproj):
    r = gguf.GGUFReader(str(llama_model))
    with Engine(llama_model, mmproj=mlp_mmproj, n_threads=1) as eng:
        info = eng.info
        assert info["arch"] == "llama"
        assert info["n_layer"] == reader_value(r, "llama.block_count") == 2
        assert info["n_head"] == 4 and info["n_head_kv"] == 2 and info["n_embd"] == 64
        assert info["n_vocab"] == len(r.fields["tokenizer.ggml.tokens"].data)
        assert info["file_type"] == "F32"
        assert info["n_params"] == sum(int(np.prod(t.shape)) for t in r.tensors)
        # Weights are kept in their stored type: bytes held == bytes of the tensors in the file.
        assert info["weight_bytes"] >= sum(int(t.n_bytes) for t in r.tensors)
        v = info["vision"]
        assert v["projector"] == "mlp" and v["n_out"] == 64 and v["image_size"] == 32
    assert eng.closed
    with pytest.raises(RuntimeError, match="closed"):
        _ = eng.info


def test_engine_keeps_quantized_types(synthetic_dir):
    from tools.fixtures.synthetic_gguf import write_text_model

    f16 = write_text_model(synthetic_dir / "llama-f16.gguf", dtype=np.float16)
    r = gguf.GGUFReader(str(f16))
    with Engine(f16, n_threads=1) as eng:
        assert eng.info["file_type"] == "F16"
        # f16 matrices + f32 vectors: the buffer holds the file's bytes, not an f32 copy.
        file_bytes = sum(int(t.n_bytes) for t in r.tensors)
        assert file_bytes <= eng.info["weight_bytes"] < file_bytes * 1.1


@pytest.mark.parametrize("arch", ["qwen2", "qwen2vl", "gemma3", "mistral3"])
def test_engine_loads_other_text_families(synthetic_dir, arch):
    from tools.fixtures.synthetic_gguf import write_text_model

    path = write_text_model(synthetic_dir / f"{arch}.gguf", arch=arch, tied=arch == "gemma3")
    with Engine(path, n_threads=1) as eng:
        assert eng.info["arch"] == arch


def test_mistral3_with_yarn_and_attention_temperature_loads(synthetic_dir):
    """Ministral 3 text (llama_4_scaling_beta, YaRN) converts as mistral3 too: such files load and
    run (their numbers against transformers: tests/test_ministral3.py)."""
    from tools.fixtures.synthetic_gguf import write_text_model

    path = write_text_model(synthetic_dir / "mistral3-yarn-temp.gguf", arch="mistral3",
                            extra_kv={"attention.temperature_scale": 0.1, "rope.scaling.type": "yarn",
                                      "rope.scaling.factor": 4.0})
    with Engine(path, n_threads=1) as eng:
        assert eng.info["arch"] == "mistral3"
        assert np.isfinite(eng.logits(list(range(1, 40)), all_positions=True)).all()


@pytest.mark.parametrize("arch", ["llama", "mistral3"])
@pytest.mark.parametrize("kind", ["longrope", "dynamic"])
def test_rope_scaling_types_not_implemented_are_refused(synthetic_dir, arch, kind):
    """Only none, linear and yarn are implemented; any other type would silently give other logits,
    so the file is refused, with the key and the supported types named."""
    from tools.fixtures.synthetic_gguf import write_text_model

    path = write_text_model(synthetic_dir / f"{arch}-{kind}.gguf", arch=arch,
                            extra_kv={"rope.scaling.type": kind, "rope.scaling.factor": 2.0})
    with pytest.raises(ModelError, match=f"{arch}.rope.scaling.type '{kind}' is not supported .none, linear and yarn"):
        Engine(path, n_threads=1)


@pytest.mark.parametrize("key,val,match", [
    ("rope.scaling.yarn_ext_factor", 0.5, "yarn_ext_factor = 0.5.* transformers' YaRN has no extrapolation factor"),
    ("rope.scaling.factor", -2.0, "rope.scaling.factor must be positive"),
    ("rope.scaling.yarn_beta_fast", -1.0, "yarn_beta_fast / yarn_beta_slow must be positive"),
])
def test_bad_yarn_keys_are_refused(synthetic_dir, key, val, match):
    from tools.fixtures.synthetic_gguf import write_text_model

    kv = {"rope.scaling.type": "yarn", "rope.scaling.factor": 4.0, key: val}
    path = write_text_model(synthetic_dir / f"yarn-{key}.gguf", arch="mistral3", extra_kv=kv)
    with pytest.raises(ModelError, match=match):
        Engine(path, n_threads=1)


def test_cli_info_model_and_mmproj_json(llama_model, mlp_mmproj, capsys):
    assert cli_main(["info", str(llama_model), "--mmproj", str(mlp_mmproj), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["model"]["arch"] == "llama" and facts["model"]["n_layer"] == 2
    assert facts["vision"]["projector"] == "mlp" and facts["vision"]["n_layer"] == 2


# --- bad input: every case raises a named exception, with the file and the problem --------


def copy_with(src: Path, dst: Path, edit) -> Path:
    data = bytearray(src.read_bytes())
    data = edit(data)
    dst.write_bytes(bytes(data))
    return dst


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.gguf"):
        Engine(tmp_path / "nope.gguf")
    with pytest.raises(FileNotFoundError):
        corehead.inspect(tmp_path / "nope.gguf")


def test_directory_and_wrong_types(tmp_path, llama_model):
    with pytest.raises(ModelError, match="directory"):
        corehead.inspect(tmp_path)
    with pytest.raises(TypeError):
        Engine(123)
    with pytest.raises(ValueError):
        Engine("")
    with pytest.raises(ValueError, match="n_threads"):
        Engine(llama_model, n_threads=0)
    with pytest.raises(ValueError, match="n_ctx"):
        Engine(llama_model, n_ctx=1)
    with pytest.raises(ValueError, match="backend"):
        Engine(llama_model, backend="tpu")


def test_backend_not_compiled_is_clear(llama_model):
    if "cuda" in corehead._core.compiled_backends():
        pytest.skip("CUDA is compiled in")
    with pytest.raises(ValueError, match="not compiled"):
        Engine(llama_model, backend="cuda")


def test_corehead_backend_variable_replaces_auto_only(llama_model, monkeypatch):
    # How the suite runs on a GPU machine (tools/gpu_check.sh): COREHEAD_BACKEND stands in for
    # backend="auto"; an explicit backend wins; a bad value names the variable.
    monkeypatch.setenv("COREHEAD_BACKEND", "cpu")
    with Engine(llama_model) as eng:
        assert eng.info["backend"] == "cpu"
    monkeypatch.setenv("COREHEAD_BACKEND", "tpu")
    with pytest.raises(ValueError, match="'tpu' from COREHEAD_BACKEND"):
        Engine(llama_model)
    with Engine(llama_model, backend="cpu") as eng:
        assert eng.info["backend"] == "cpu"


def test_info_says_which_backend_ran_each_part(toy_engine):
    toy_engine.logits(toy_engine.image_marker + " What color?", images=[np.zeros((32, 32, 3), np.uint8)])
    info = toy_engine.info
    assert set(info["placement"]) == {"text", "vision"}
    main = {"cpu": "CPU", "cuda": "CUDA0", "metal": "MTL0"}[info["backend"]]
    for part in ("text", "vision"):
        nodes, fallback = info["placement"][part], info["cpu_fallback_ops"][part]
        if info["backend"] == "cpu":  # every node of the last graph ran on the CPU, none fell back
            assert list(nodes) == ["CPU"] and nodes["CPU"] > 10 and fallback == []
        else:  # a GPU ran most of it; CPU nodes exactly when some op fell back, and those are named
            assert set(nodes) <= {main, "CPU"} and nodes[main] > sum(nodes.values()) / 2
            assert (nodes.get("CPU", 0) > 0) == bool(fallback) and fallback == sorted(fallback)


def test_wrong_magic(tmp_path, llama_model):
    bad = copy_with(llama_model, tmp_path / "magic.gguf", lambda d: b"GGML" + d[4:])
    with pytest.raises(ModelError, match=r"magic\.gguf.*not a GGUF file"):
        Engine(bad)


def test_not_gguf_at_all(tmp_path):
    p = tmp_path / "image.gguf"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ModelError, match="not a GGUF"):
        corehead.inspect(p)
    (tmp_path / "empty.gguf").write_bytes(b"")
    with pytest.raises(ModelError, match="too small"):
        corehead.inspect(tmp_path / "empty.gguf")


@pytest.mark.parametrize("cut", [10, 100, 2000, -1000, -1])
def test_truncated_file(tmp_path, llama_model, cut):
    size = llama_model.stat().st_size
    n = cut if cut > 0 else size + cut
    bad = copy_with(llama_model, tmp_path / "cut.gguf", lambda d: d[:n])
    with pytest.raises(ModelError, match=r"cut\.gguf"):
        Engine(bad)


def test_absurd_counts(tmp_path, llama_model):
    huge_tensors = copy_with(llama_model, tmp_path / "nt.gguf", lambda d: d[:8] + struct.pack("<Q", 2**60) + d[16:])
    with pytest.raises(ModelError, match="tensor count"):
        Engine(huge_tensors)
    huge_kv = copy_with(llama_model, tmp_path / "nkv.gguf", lambda d: d[:16] + struct.pack("<Q", 2**62) + d[24:])
    with pytest.raises(ModelError, match="key/value count"):
        Engine(huge_kv)
    bad_version = copy_with(llama_model, tmp_path / "ver.gguf", lambda d: d[:4] + struct.pack("<I", 99) + d[8:])
    with pytest.raises(ModelError, match="version 99"):
        Engine(bad_version)


def test_tensor_data_past_end_of_file(tmp_path, llama_model):
    # Drop the last bytes of tensor data but keep the header intact: the last tensor's
    # offset+size then runs past the end of the file.
    bad = copy_with(llama_model, tmp_path / "short.gguf", lambda d: d[:-64])
    with pytest.raises(ModelError, match="runs past the end of the file"):
        Engine(bad)


def test_shape_disagrees_with_hparams(synthetic_dir):
    from tools.fixtures.synthetic_gguf import write_text_model

    bad = write_text_model(synthetic_dir / "badshape.gguf", shape_overrides={"blk.1.attn_k.weight": (48, 64)})
    expected = r"badshape\.gguf.*blk\.1\.attn_k\.weight.*shape \[64, 48\].*expected \[64, 32\]"
    with pytest.raises(ModelError, match=expected):
        Engine(bad)


def test_hparams_disagree_with_tensors(synthetic_dir):
    from tools.fixtures.synthetic_gguf import write_text_model

    bad = write_text_model(synthetic_dir / "badhp.gguf", kv_overrides={"block_count": 3})
    with pytest.raises(ModelError, match="missing tensor 'blk.2.attn_norm.weight'"):
        Engine(bad)
    bad = write_text_model(synthetic_dir / "badheads.gguf", kv_overrides={"attention.head_count_kv": 3})
    with pytest.raises(ModelError, match="multiple of attention.head_count_kv"):
        Engine(bad)


def test_missing_and_unexpected_tensors(synthetic_dir):
    from tools.fixtures.synthetic_gguf import write_text_model

    bad = write_text_model(synthetic_dir / "missing.gguf", drop=("blk.0.ffn_up.weight",))
    with pytest.raises(ModelError, match="missing tensor 'blk.0.ffn_up.weight'"):
        Engine(bad)
    bad = write_text_model(synthetic_dir / "extra.gguf", extra={"blk.0.mystery.weight": (8, 8)})
    with pytest.raises(ModelError, match="unexpected tensor 'blk.0.mystery.weight'"):
        Engine(bad)


def write_gguf(path: Path, arch: str, add) -> Path:
    """A GGUF file of `arch` with what add(writer) puts in it."""
    w = gguf.GGUFWriter(str(path), arch)
    add(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_unknown_architecture(tmp_path):
    def add(w):
        w.add_uint32("mamba.block_count", 1)
        w.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))

    write_gguf(tmp_path / "mamba.gguf", "mamba", add)
    with pytest.raises(ModelError, match="not supported yet: mamba"):
        Engine(tmp_path / "mamba.gguf")


def test_mmproj_and_model_swapped(llama_model, mlp_mmproj):
    with pytest.raises(ModelError, match="vision projector.*mmproj"):
        Engine(mlp_mmproj)
    with pytest.raises(ModelError, match="not an mmproj file"):
        Engine(llama_model, mmproj=llama_model)


def test_mmproj_for_another_model(synthetic_dir, llama_model):
    from tools.fixtures.synthetic_gguf import write_mmproj

    other = write_mmproj(synthetic_dir / "mmproj-96.gguf", n_out=96)
    with pytest.raises(ModelError, match="96-dimensional.*n_embd = 64"):
        Engine(llama_model, mmproj=other)


def test_unknown_projector(tmp_path):
    write_gguf(tmp_path / "proj.gguf", "clip", lambda w: w.add_string("clip.projector_type", "resampler"))
    with pytest.raises(ModelError, match="projector type not supported yet: resampler"):
        corehead.inspect(mmproj=tmp_path / "proj.gguf")


def test_metadata_of_wrong_type(synthetic_dir):
    # block_count written as a string would GGML_ASSERT in ggml's typed getter.
    path = write_gguf(synthetic_dir / "strkey.gguf", "llama", lambda w: w.add_string("llama.block_count", "two"))
    with pytest.raises(ModelError, match="block_count' should be an integer"):
        corehead.inspect(path)


def test_vocab_only_file_as_engine(llama_cpp_dir):
    with pytest.raises(ModelError, match="only a tokenizer"):
        Engine(llama_cpp_dir / "models" / "ggml-vocab-llama-spm.gguf")


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert cli_main(["info", str(tmp_path / "missing.gguf")]) == 1
    assert "missing.gguf" in capsys.readouterr().err


def test_random_corruption_never_aborts(tmp_path, llama_model):
    """Flip bytes all over the metadata of a valid file, in a child process: every outcome must
    be success or a Python exception; a C++ abort or segfault would kill the child."""
    data = llama_model.read_bytes()
    shutil.copy(llama_model, tmp_path / "orig.gguf")
    script = textwrap.dedent(
        f"""
        import random, sys
        from pathlib import Path
        import corehead
        data = bytearray(Path({str(tmp_path / 'orig.gguf')!r}).read_bytes())
        head = min(len(data), 24000)
        outcomes = {{}}
        for seed in range(300):
            rng = random.Random(seed)
            d = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(4, head)
                d[i] = rng.randrange(256)
            if seed % 7 == 0:
                d = d[: rng.randrange(24, len(d))]
            p = Path({str(tmp_path)!r}) / 'mut.gguf'
            p.write_bytes(bytes(d))
            try:
                corehead.inspect(p)
                kind = 'ok'
            except (corehead.ModelError, ValueError, FileNotFoundError) as e:
                kind = type(e).__name__
            outcomes[kind] = outcomes.get(kind, 0) + 1
        print(outcomes)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ModelError" in proc.stdout
    assert len(data) > 0


@pytest.mark.parametrize("family", VISION)
def test_converter_written_model_and_mmproj_pairs_load(family):
    """Files written by llama.cpp's own converters (tests/data, python -m tools.fixtures.make)."""
    d = Path(__file__).parent / "data" / family
    mr = gguf.GGUFReader(str(d / "model-f32.gguf"))
    vr = gguf.GGUFReader(str(d / "mmproj-f32.gguf"))
    arch = reader_value(mr, "general.architecture")
    with Engine(d / "model-f32.gguf", mmproj=d / "mmproj-f32.gguf", n_threads=1) as eng:
        info = eng.info
        assert info["arch"] == arch
        assert info["n_layer"] == reader_value(mr, f"{arch}.block_count")
        assert info["n_embd"] == reader_value(mr, f"{arch}.embedding_length")
        v = info["vision"]
        # newer converters (gemma4v) write the per-modality key clip.vision.projector_type
        key = "clip.projector_type" if "clip.projector_type" in vr.fields else "clip.vision.projector_type"
        assert v["projector"] == reader_value(vr, key)
        assert v["n_layer"] == reader_value(vr, "clip.vision.block_count")
        assert v["image_size"] == reader_value(vr, "clip.vision.image_size")
        assert v["n_out"] == info["n_embd"]
        assert v["n_tensors"] == len(vr.tensors)
