#!/usr/bin/env python3
"""Fetch the pinned ggml source (docs/architecture.md §2) into a reusable cache folder.

ggml comes from the `vendor/llama.cpp/ggml` folder of the llama-cpp-python 0.3.36
source distribution on PyPI (the only source host reachable from build and CI machines).
The tarball is verified by sha256, only the needed folders are extracted, and
`ggml_patches/*.patch` are applied in name order.

Prints the path of the ggml tree on the last line of stdout (CMake reads it).

    python -m tools.build.fetch_ggml [--cache DIR] [--with-llama-cpp]
    python tools/build/fetch_ggml.py ...         (the same; CMake runs it so, it imports only the standard library)

`--with-llama-cpp` also extracts the whole llama.cpp tree (tokenizer vocabularies,
chat templates, convert_hf_to_gguf.py, llama.cpp itself) for tests and benchmarks and
prints its path instead.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TARBALL = f"llama_cpp_python-{VERSION}.tar.gz"
ROOT_IN_TAR = f"llama_cpp_python-{VERSION}/vendor/llama.cpp"
REPO = Path(__file__).resolve().parents[2]


def default_cache() -> Path:
    env = os.environ.get("COREHEAD_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "corehead"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(cache: Path) -> Path:
    """Return the verified tarball, downloading it with pip when it is not cached."""
    tarball = cache / TARBALL
    if tarball.exists() and sha256_of(tarball) == SHA256:
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        # --no-binary only for this package: `--no-binary :all:` would also build pip's
        # own build dependencies (cmake!) from source. --no-build-isolation reuses the
        # scikit-build-core that is already present for the metadata step.
        attempts = [
            ["--no-binary", PACKAGE, "--no-build-isolation"],
            ["--no-binary", PACKAGE, "--only-binary", "cmake,ninja,scikit-build-core"],
        ]
        errors = []
        for extra in attempts:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *extra,
                   f"{PACKAGE}=={VERSION}", "-d", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / TARBALL
            if got.exists():
                break
            errors.append(f"$ {' '.join(cmd)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        else:
            sys.exit("corehead: could not download the pinned ggml source "
                     f"({PACKAGE}=={VERSION} sdist from PyPI).\n" + "\n".join(errors) +
                     "\nCheck network access to PyPI, or pass -DCOREHEAD_GGML_DIR=<ggml tree>.")
        digest = sha256_of(got)
        if digest != SHA256:
            sys.exit(f"corehead: sha256 mismatch for {TARBALL}: got {digest}, expected {SHA256}. "
                     "Refusing to build from an unverified source.")
        shutil.move(str(got), tarball)
    return tarball


def extract(tarball: Path, dest: Path, subdir: str) -> Path:
    """Extract ROOT_IN_TAR/subdir (or the whole llama.cpp tree when subdir is '') once."""
    out = dest / (subdir or "llama.cpp")
    stamp = out / ".corehead-extracted"
    if stamp.exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    dest.mkdir(parents=True, exist_ok=True)
    prefix = ROOT_IN_TAR + ("/" + subdir if subdir else "")
    with tempfile.TemporaryDirectory(dir=dest) as tmp, tarfile.open(tarball) as tf:
        members = [m for m in tf.getmembers()
                   if (m.name == prefix or m.name.startswith(prefix + "/")) and (m.isfile() or m.isdir())]
        tf.extractall(tmp, members=members, filter="data")
        shutil.move(str(Path(tmp) / prefix), out)
    stamp.write_text(SHA256)
    return out


def patch_dir() -> Path:
    return REPO / "ggml_patches"


def patches_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(patch_dir().glob("*.patch")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def prepared_ggml(cache: Path, tarball: Path) -> Path:
    """The ggml tree with our patches applied; keyed by the patch set so edits rebuild it."""
    key = patches_digest()
    dest = cache / f"ggml-{VERSION}-{key}"
    ggml = dest / "ggml"
    if (ggml / ".corehead-patched").exists():
        return ggml
    dest.mkdir(parents=True, exist_ok=True)
    extract(tarball, dest, "ggml")
    for p in sorted(patch_dir().glob("*.patch")):
        proc = subprocess.run(["patch", "-p1", "--forward", "-i", str(p)], cwd=ggml,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"corehead: patch {p.name} does not apply to ggml {VERSION}:\n{proc.stdout}{proc.stderr}")
    (ggml / ".corehead-patched").write_text(key)
    return ggml


def llama_cpp_tree(cache: Path | None = None) -> Path:
    """The whole llama.cpp tree of the pinned tarball (what `--with-llama-cpp` prints)."""
    cache = cache or default_cache()
    return extract(download(cache), cache / f"src-{VERSION}", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--with-llama-cpp", action="store_true",
                    help="extract the whole llama.cpp tree (tests/benchmarks) and print its path")
    args = ap.parse_args()
    if args.with_llama_cpp:
        print(llama_cpp_tree(args.cache))
    else:
        print(prepared_ggml(args.cache, download(args.cache)))


if __name__ == "__main__":
    main()
