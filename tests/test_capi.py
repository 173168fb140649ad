"""corehead's C API (cpp/include/corehead/corehead.h, libcorehead) as an app uses it: C programs
compiled here with `cc` against the header and library that corehead.get_include() /
corehead.get_library() point to (the installed wheel in CI; a source checkout with PYTHONPATH=python
and the built library copied into python/corehead/lib/), run on the llava fixture.

References: the transformers outputs committed in tests/data/llava (greedy ids, the last token's
attention, logits with heads zeroed / knocked out / mean-replaced / CoRe-sparse) and the Python
Engine computing the same requests. Also: bad input through every entry point gets an error
status and a message (never an abort), two threads with an engine each, the example and the
bad-input program under AddressSanitizer, and the library exporting only corehead_* symbols."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import corehead
from corehead import Engine

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "llava"
MODEL, MMPROJ, IMAGE = DATA / "model-f32.gguf", DATA / "mmproj-f32.gguf", DATA / "image.png"
PROMPT = "USER: <__media__>\nWhat is this? ASSISTANT:"  # tests/data/llava/meta.json
TEXT_PROMPT = "USER: What is this? ASSISTANT:"
CC = shutil.which(os.environ.get("CC", "cc"))

pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to build the C API programs with")


def compile_c(sources: list[Path], out: Path, *flags: str) -> Path:
    """Compiles C99 sources against the installed corehead header + shared library (rpath to it)."""
    lib = corehead.get_library()
    cmd = [CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", *map(str, sources), "-I", corehead.get_include(),
           lib, f"-Wl,-rpath,{os.path.dirname(lib)}", *flags, "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"
    return out


def run(cmd: list, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, (f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\n"
                                  f"stderr:\n{done.stderr[-3000:]}")
    return done


def asan_flags() -> list[str]:
    return ["-fsanitize=address", "-fno-omit-frame-pointer", "-g"]


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("capi")
    out = {
        "example": compile_c([ROOT / "examples" / "c" / "generate_attention.c"], d / "generate_attention"),
        "bad_input": compile_c([ROOT / "tests" / "capi" / "bad_input.c"], d / "bad_input", "-lm"),
        "two_threads": compile_c([ROOT / "tests" / "capi" / "two_threads.c"], d / "two_threads", "-pthread"),
        "steer": compile_c([ROOT / "tests" / "capi" / "steer.c"], d / "steer"),
    }
    # The image as the C API takes it: raw RGB8 (apps decode files with their own image library).
    img = Image.open(IMAGE).convert("RGB")
    (d / "image.rgb").write_bytes(img.tobytes())
    out["image"], out["dir"] = d / "image.rgb", d
    out["size"] = Path(f"{img.width}x{img.height}")
    return out


@pytest.fixture(scope="module")
def engine():
    with Engine(MODEL, mmproj=MMPROJ, n_threads=2, n_ctx=1024) as eng:
        yield eng


@pytest.fixture(scope="module")
def ref():
    return np.load(DATA / "ref.npz")


def image_args(programs) -> list:
    w, h = str(programs["size"]).split("x")
    return [MMPROJ, programs["image"], w, h]


def parse_example(stdout: str) -> tuple[str, list[int], tuple[int, ...], np.ndarray]:
    lines = stdout.splitlines()
    version = lines[0].split()[1]
    ids = [int(t) for t in lines[1].split()[1:]]
    shape = tuple(int(v) for v in lines[2].split()[1:])
    rows = np.array([[float(v) for v in line.split()[3:]] for line in lines[3:]], dtype=np.float32)
    return version, ids, shape, rows.reshape(shape[0], shape[1], shape[3])


# --- the package tells apps where the C API is -------------------------------------------------

def test_get_include_and_get_library_point_at_the_c_api():
    header = Path(corehead.get_include()) / "corehead" / "corehead.h"
    assert header.is_file()
    lib = Path(corehead.get_library())
    assert lib.is_file() and lib.name.startswith("libcorehead")
    # Installed: beside the package (or beside corehead._core in an editable install); a source
    # checkout: the header in cpp/include.
    pkg = Path(corehead.__file__).resolve().parent
    assert lib.parent in {pkg / "lib", Path(corehead._core.__file__).resolve().parent / "lib"}
    installed = {(d / "include" / "corehead" / "corehead.h").resolve() for d in (pkg, lib.parent.parent)}
    assert header.resolve() in installed | {(ROOT / "cpp" / "include" / "corehead" / "corehead.h").resolve()}


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("nm") is None, reason="ELF + nm only")
def test_the_library_exports_only_the_c_api():
    """Every function the header declares and nothing else: ggml and corehead's C++ internals are
    hidden, so an app that links its own ggml does not clash."""
    declared = set(re.findall(r"COREHEAD_API[^;]*?\b(corehead_\w+)\s*\(",
                              (Path(corehead.get_include()) / "corehead" / "corehead.h").read_text()))
    done = subprocess.run(["nm", "-D", "--defined-only", corehead.get_library()], capture_output=True, text=True,
                          check=True)
    exported = {line.split()[-1] for line in done.stdout.splitlines() if line.strip()}
    assert len(declared) >= 15
    assert exported == declared
    undefined = subprocess.run(["nm", "-D", "--undefined-only", corehead.get_library()], capture_output=True,
                               text=True, check=True).stdout
    if corehead.system_info()["build"] == "native":
        assert "ggml_" not in undefined  # ggml is inside, not expected from the app
    else:
        # A portable build loads ggml's CPU modules at run time, so ggml is shared libraries of
        # corehead's own, found beside libcorehead (RUNPATH $ORIGIN), never the app's
        # (docs/architecture.md §2, the trade-off).
        dyn = subprocess.run(["readelf", "-d", corehead.get_library()], capture_output=True, text=True,
                             check=True).stdout
        assert "$ORIGIN" in dyn
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libggml[^\]]*)\]", dyn)
        assert needed and all((Path(corehead.get_library()).parent / n).is_file() for n in needed), needed


def test_header_compiles_as_c99_and_as_cxx(tmp_path):
    src = tmp_path / "use.c"
    src.write_text('#include "corehead/corehead.h"\n'
                   "int main(void) { return corehead_engine_default_params().n_ctx > 0 ? 0 : 1; }\n")
    c = subprocess.run([CC, "-std=c99", "-pedantic", "-Werror", "-Wall", "-fsyntax-only", "-I", corehead.get_include(),
                        str(src)], capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    cxx = shutil.which(os.environ.get("CXX", "c++"))
    if cxx:
        cpp = tmp_path / "use.cpp"
        cpp.write_text(src.read_text())
        done = subprocess.run([cxx, "-std=c++11", "-pedantic", "-Werror", "-Wall", "-fsyntax-only", "-I",
                               corehead.get_include(), str(cpp)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# --- the example: generate + attention of the last token --------------------------------------

def test_example_matches_transformers_and_the_python_engine(programs, engine, ref):
    done = run([programs["example"], MODEL, PROMPT, 8, *image_args(programs)])
    version, ids, shape, rows = parse_example(done.stdout)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert version == re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    # transformers' greedy answer (f32 model, no EOS stop) and the Python Engine's
    assert ids == ref["greedy_ids"].tolist()
    assert ids == engine.generate_ids(PROMPT, images=[IMAGE], max_tokens=8)
    # the streamed pieces (stderr) are the text of those ids
    assert done.stderr.rstrip("\n") == engine.detokenize(ids)
    n = len(ref["prompt_ids"])
    assert shape == (2, 4, 1, n)
    np.testing.assert_allclose(rows, ref["attn_last"], atol=1e-4)
    np.testing.assert_allclose(rows, engine.attention(PROMPT, images=[IMAGE])[:, :, 0], rtol=0, atol=1e-6)


def test_example_text_prompt_matches_the_python_engine(programs, engine):
    done = run([programs["example"], MODEL, TEXT_PROMPT, 6])
    _, ids, shape, rows = parse_example(done.stdout)
    assert ids == engine.generate_ids(TEXT_PROMPT, max_tokens=6)
    assert shape[3] == len(engine.tokenize(TEXT_PROMPT))
    np.testing.assert_allclose(rows, engine.attention(TEXT_PROMPT)[:, :, 0], rtol=0, atol=1e-6)


def test_the_token_callback_stops_generation(programs, engine):
    """The example's callback returns false after MAX_TOKENS pieces; max_tokens 0 generates nothing."""
    _, ids, _, _ = parse_example(run([programs["example"], MODEL, TEXT_PROMPT, 3]).stdout)
    assert ids == engine.generate_ids(TEXT_PROMPT, max_tokens=3)
    _, ids, _, _ = parse_example(run([programs["example"], MODEL, TEXT_PROMPT, 0]).stdout)
    assert ids == []


def asan_or_skip(programs, name: str, source: Path, *flags: str) -> Path:
    probe = programs["dir"] / "asan_probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    ok = subprocess.run([CC, *asan_flags(), str(probe), "-o", str(probe.with_suffix(""))], capture_output=True)
    if ok.returncode != 0:
        pytest.skip(f"{CC} cannot build with -fsanitize=address here")
    return compile_c([source], programs["dir"] / f"{name}_asan", *asan_flags(), *flags)


ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=99"}


def run_asan(cmd: list) -> subprocess.CompletedProcess:
    """Runs under ASan with LeakSanitizer; where LSan cannot run at all (it needs ptrace, which some
    containers forbid) the run is repeated without leak detection, ASan's other checks still on."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ASAN_ENV})
    if done.returncode != 0 and "LeakSanitizer has encountered a fatal error" in done.stderr:
        return run(cmd, env={"ASAN_OPTIONS": ASAN_ENV["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")})
    assert done.returncode == 0, f"exit {done.returncode}\nstderr:\n{done.stderr[-3000:]}"
    return done


def test_example_under_address_sanitizer(programs, ref):
    """The example (instrumented; the library is not) under ASan + LeakSanitizer: no report, same output."""
    exe = asan_or_skip(programs, "example", ROOT / "examples" / "c" / "generate_attention.c")
    done = run_asan([exe, MODEL, PROMPT, 8, *image_args(programs)])
    _, ids, _, rows = parse_example(done.stdout)
    assert ids == ref["greedy_ids"].tolist()
    np.testing.assert_allclose(rows, ref["attn_last"], atol=1e-4)
    assert "AddressSanitizer" not in done.stderr and "LeakSanitizer" not in done.stderr


@pytest.mark.skipif(shutil.which("cargo") is None, reason="no Rust toolchain (cargo) for examples/rust")
def test_rust_binding_sketch_matches_the_python_engine(programs, engine):
    """examples/rust (no crates: builds offline) links the installed library and reads the same numbers."""
    target = programs["dir"] / "rust-target"
    env = {"COREHEAD_LIB_DIR": os.path.dirname(corehead.get_library()), "CARGO_TARGET_DIR": str(target)}
    run(["cargo", "build", "--offline", "--quiet", "--manifest-path", ROOT / "examples" / "rust" / "Cargo.toml"],
        env=env, timeout=600)
    done = run([target / "debug" / "corehead-example", MODEL, TEXT_PROMPT, 6])
    version, ids, shape, rows = parse_example(done.stdout)
    header = (Path(corehead.get_include()) / "corehead" / "corehead.h").read_text()
    assert version == re.search(r'#define COREHEAD_VERSION "([^"]+)"', header).group(1)
    assert ids == engine.generate_ids(TEXT_PROMPT, max_tokens=6)
    np.testing.assert_allclose(rows, engine.attention(TEXT_PROMPT)[:, :, 0], rtol=0, atol=1e-6)


# --- bad input --------------------------------------------------------------------------------

INVALID, MODEL_ERR, MISSING = "COREHEAD_ERR_INVALID_ARGUMENT", "COREHEAD_ERR_MODEL", "COREHEAD_ERR_FILE_NOT_FOUND"
SHORT, OVERFLOW, OK = "COREHEAD_ERR_BUFFER_TOO_SMALL", "COREHEAD_ERR_CONTEXT_OVERFLOW", "COREHEAD_OK"
# tests/capi/bad_input.c: case -> (status, words the message must hold)
EXPECTED = {
    "info_ok": (OK, ""), "is_eog_null_engine": ("false", ""),
    "info_null_engine": (INVALID, "engine is NULL"), "info_null_out": (INVALID, "info is NULL"),
    "tokenize_null_engine": (INVALID, "engine is NULL"), "tokenize_null_text": (INVALID, "text is NULL"),
    "tokenize_null_n_out": (INVALID, "n_out is NULL"), "detokenize_null_engine": (INVALID, "engine is NULL"),
    "logits_null_engine": (INVALID, "engine is NULL"), "logits_null_prompt": (INVALID, "prompt is NULL"),
    "logits_null_n_out": (INVALID, "n_out is NULL"), "generate_null_engine": (INVALID, "engine is NULL"),
    "generate_null_prompt": (INVALID, "prompt is NULL"), "attention_null_engine": (INVALID, "engine is NULL"),
    "interventions_null_engine": (INVALID, "engine is NULL"), "sparse_null_engine": (INVALID, "engine is NULL"),
    "tokenize_size_query": (OK, ""), "tokenize_short": (SHORT, "capacity is 1"),
    "detokenize_short": (SHORT, "capacity is 1"), "detokenize_bad_id": (INVALID, "out of range"),
    "detokenize_null_tokens": (INVALID, "tokens is NULL"), "logits_short": (SHORT, "needs 1000"),
    "logits_size_query": (OK, ""), "prompt_text_and_tokens": (INVALID, "both text and tokens"),
    "prompt_empty": (INVALID, "empty"), "prompt_empty_text": (INVALID, "empty"),
    "prompt_token_out_of_range": (INVALID, "out of range"), "prompt_token_negative": (INVALID, "out of range"),
    "prompt_null_tokens": (INVALID, "prompt.tokens is NULL"), "prompt_null_images": (INVALID, "prompt.images is NULL"),
    "prompt_image_without_text": (INVALID, "needs text"),
    "prompt_image_without_mmproj": (INVALID, "no vision projector"),
    "image_null_rgb": (INVALID, "rgb is NULL"), "image_zero_width": (INVALID, "positive"),
    "image_huge": (INVALID, "megapixels"), "image_marker_count": (INVALID, "marker"),
    "generate_negative_max_tokens": (INVALID, "max_tokens"), "generate_short_buffer": (SHORT, "max_tokens"),
    "generate_negative_temperature": (INVALID, "temperature"), "generate_nan_temperature": (INVALID, "temperature"),
    "generate_top_p_2": (INVALID, "top_p"), "generate_context_overflow": (OVERFLOW, "n_ctx"),
    "logits_context_overflow": (OVERFLOW, "n_ctx"),
    "attention_position_out_of_range": (INVALID, "position 999"),
    "attention_negative_position_out_of_range": (INVALID, "position -2"),
    "attention_bad_layer": (INVALID, "layer 99"), "attention_null_positions": (INVALID, "positions is NULL"),
    "attention_short": (SHORT, "needs 8"), "attention_size_query_image": (OK, ""),
    "logits_before": (OK, ""), "intervention_bad_layer": (INVALID, "layer 99"),
    "intervention_bad_head": (INVALID, "head 99"), "intervention_negative_head": (INVALID, "head -1"),
    "intervention_bad_kind": (INVALID, "kind"), "intervention_mean_null": (INVALID, "mean is NULL"),
    "intervention_null_items": (INVALID, "items is NULL"), "intervention_duplicate": (INVALID, "twice"),
    "intervention_key_outside_context": (INVALID, "out of range"),
    "intervention_null_keys": (INVALID, "knockout_keys is NULL"), "logits_after_failures": (OK, ""),
    "logits_unchanged": (OK, ""), "sparse_bad_head": (INVALID, "out of range"),
    "sparse_bad_keep": (INVALID, "visual_keep"), "sparse_negative_sink": (INVALID, "sink"),
    "sparse_null_heads": (INVALID, "core_heads is NULL"), "sparse_ok": (OK, ""),
    "attention_in_sparse_mode": (INVALID, "dense KV cache"), "knockout_in_sparse_mode": (INVALID, "dense KV cache"),
    "dense_again": (OK, ""), "logits_dense_again": (OK, ""), "logits_dense_unchanged": (OK, ""),
    "status_name_unknown": ("unknown", ""),
}
LOADS = {  # load case -> words the message must hold (every one returns NULL but the last)
    "null_model": "model (the path of a language-model GGUF) is NULL", "missing_model": "no such file",
    "malformed_model": "truncated GGUF header", "truncated_model": "cannot fit in the file",
    "missing_mmproj": "no such file", "text_model_as_mmproj": "not an mmproj file",
    "mmproj_as_model": "vision projector", "n_ctx_1": "n_ctx", "n_batch_0": "n_batch",
    "n_threads_negative": "n_threads", "kv_type_bad": "kv_type", "backend_bad": "backend",
}


def bad_files(d: Path) -> tuple[Path, Path]:
    malformed = d / "malformed.gguf"
    malformed.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    truncated = d / "truncated.gguf"
    truncated.write_bytes(MODEL.read_bytes()[:300])
    return malformed, truncated


def check_bad_input(stdout: str, engine) -> None:
    lines = stdout.splitlines()
    assert lines[-1] == "done"
    loads = {ln.split()[1]: ln.split(maxsplit=3)[2:] for ln in lines if ln.startswith("load ")}
    for name, words in LOADS.items():
        state, message = loads[name][0], (loads[name] + [""])[1]
        assert state == "NULL" and words in message, (name, loads[name])
    assert loads["null_strings_mean_defaults"] == ["loaded"]
    cases = {}
    for ln in lines:
        if ln.startswith("case "):
            parts = ln.split(maxsplit=4)
            cases[parts[1]] = (parts[2], int(parts[3]), parts[4] if len(parts) > 4 else "")
    assert set(cases) == set(EXPECTED)
    for name, (status, words) in EXPECTED.items():
        got, _, message = cases[name]
        assert got == status, (name, cases[name])
        assert words in message, (name, message)
        if status.startswith("COREHEAD_ERR"):
            assert message, name
    # sizes reported by size queries and short buffers, against the Python side
    n_prompt = len(engine.tokenize("What is this?"))
    assert cases["tokenize_size_query"][1] == cases["tokenize_short"][1] == n_prompt
    assert cases["logits_short"][1] == cases["logits_size_query"][1] == engine.info["n_vocab"] == 1000
    assert cases["generate_short_buffer"][1] == 8
    assert cases["attention_short"][1] == engine.info["n_layer"] * engine.info["n_head"]  # 1 key x 1 position
    gray = np.full((8, 8, 3), 128, np.uint8)
    assert cases["attention_size_query_image"][1] == len(engine.multimodal_tokens("<__media__>What is this?", [gray]))
    assert cases["detokenize_short"][1] == len(engine.detokenize([5, 6]).encode())


def test_bad_input_gets_an_error_status_and_a_message(programs, engine):
    malformed, truncated = bad_files(programs["dir"])
    check_bad_input(run([programs["bad_input"], MODEL, MMPROJ, malformed, truncated]).stdout, engine)


def test_bad_input_under_address_sanitizer(programs, engine):
    exe = asan_or_skip(programs, "bad_input", ROOT / "tests" / "capi" / "bad_input.c", "-lm")
    malformed, truncated = bad_files(programs["dir"])
    done = run_asan([exe, MODEL, MMPROJ, malformed, truncated])
    check_bad_input(done.stdout, engine)
    assert "Sanitizer" not in done.stderr


# --- threads ----------------------------------------------------------------------------------

def test_two_threads_each_with_its_own_engine(programs, engine):
    done = run([programs["two_threads"], MODEL, TEXT_PROMPT, 8])
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok", done.stdout
    want_ids = engine.generate_ids(TEXT_PROMPT, max_tokens=8, stop_at_eog=False)
    want_att = engine.attention(TEXT_PROMPT)[:, :, 0].ravel()
    for t in (0, 1):
        ids = next(ln for ln in lines if ln.startswith(f"thread {t} generated")).split()[3:]
        att = next(ln for ln in lines if ln.startswith(f"thread {t} attention")).split()[3:]
        assert [int(i) for i in ids] == want_ids
        np.testing.assert_allclose(np.array(att, dtype=np.float32), want_att, rtol=0, atol=1e-6)


# --- interventions and the CoRe-sparse cache --------------------------------------------------

def test_interventions_and_sparse_match_transformers(programs, engine, ref):
    """Zero, knockout (of the visual tokens) and mean interventions and the CoRe-sparse cache set
    through the C API give transformers' last-position logits (tests/data/llava/ablation_ref.npz,
    sparse_ref.npz) and the Python Engine's; clearing them gives back the plain logits exactly."""
    abl, sp = np.load(DATA / "ablation_ref.npz"), np.load(DATA / "sparse_ref.npz")
    # Knockout as the literature means it: the queries after the image may not read its visual
    # tokens (tests/data/llava/knockout_ref.npz, tools/refs/knockout.py).
    ko = np.load(DATA / "knockout_ref.npz")
    group = engine.info["n_head"] // engine.info["n_head_kv"]
    core = [(layer, int(kv) * group) for layer, kv in enumerate(sp["core_kv"])]

    def pairs(heads) -> str:
        return f"{len(heads)} " + " ".join(f"{int(layer)} {int(h)}" for layer, h in heads)

    means = " ".join(f"{v:.9g}" for v in abl["mean_vectors"].ravel())
    spec = programs["dir"] / "steer.txt"
    spec.write_text("\n".join([
        "plain none 0",
        f"zeroA zero {pairs(abl['zeroA_heads'])}",
        f"zeroB zero {pairs(abl['zeroB_heads'])}",
        f"knock knockout {pairs(ko['after_heads'])}",
        f"mean mean {pairs(abl['mean_heads'])} {means}",
        f"sparse sparse {pairs(core)} {int(sp['sink'].item())}",
        "plain_again none 0",
    ]) + "\n")
    done = run([programs["steer"], MODEL, *image_args(programs), PROMPT, spec])
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok", done.stdout
    got = {ln.split()[1]: np.array(ln.split()[2:], dtype=np.float32) for ln in lines[:-1]}

    def close(a, b) -> bool:
        return float(np.abs(a - b).max()) <= 1e-3 * float(np.abs(b).max())

    assert close(got["plain"], ref["logits_last"])
    np.testing.assert_array_equal(got["plain_again"], got["plain"])
    for name, want in [("zeroA", abl["zeroA_logits_all"][-1]), ("zeroB", abl["zeroB_logits_all"][-1]),
                       ("knock", ko["after_logits_all"][-1]), ("mean", abl["mean_logits_all"][-1]),
                       ("sparse", sp["logits_all"][-1])]:
        assert close(got[name], want), name
        assert not close(got["plain"], want), f"{name} should change the logits"
    # the Python Engine, same requests
    with engine.ablated([tuple(h) for h in abl["zeroB_heads"].tolist()]):
        py_zero = engine.logits(PROMPT, images=[IMAGE])
    np.testing.assert_allclose(got["zeroB"], py_zero, rtol=0, atol=1e-5)
    with engine.sparse(core, sink=int(sp["sink"].item())):
        py_sparse = engine.logits(PROMPT, images=[IMAGE])
    np.testing.assert_allclose(got["sparse"], py_sparse, rtol=0, atol=1e-5)
