#!/usr/bin/env python3
"""Build the tiny random-weight test models + transformers reference outputs under tests/data/.

For every family: build a tiny HF transformers model with a deterministic offline tokenizer,
redraw all weights from a fixed seed, save it to a scratch dir, convert it with llama.cpp's
convert_hf_to_gguf.py from the pinned tarball (f32 and f16; --mmproj for the vision part), and
save reference outputs (logits, per-head attention, greedy ids, image embeddings, pixel values)
computed with transformers' eager attention into tests/data/<family>/ref.npz.

Needs (not needed by the tests): torch 2.13.0 CPU, transformers 5.23.0, tokenizers,
sentencepiece, gguf, safetensors, protobuf, pillow. See tests/data/README.md.

    python tools/make_fixtures.py                 # all families
    python tools/make_fixtures.py llama qwen2vl   # some
    python tools/make_fixtures.py --readme-only   # regenerate the GGUF key/tensor summary
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import common as C  # noqa: E402

FAMILIES = ["llama", "qwen2", "gemma3", "llava", "idefics3", "qwen2vl", "qwen25vl", "gemma3vl"]
SEEDS = {f: 1000 + i for i, f in enumerate(FAMILIES)}
NP_CHECKED = {"llama", "qwen2", "llava", "idefics3"}  # plain-numpy forward on the GGUF must match HF


def builder(name):
    if name in ("llama", "qwen2", "gemma3"):
        from fixtures import text

        return getattr(text, f"build_{name}")
    import importlib

    return importlib.import_module(f"fixtures.{name}").build


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {FAMILIES}")
    ap.add_argument("--out", type=Path, default=C.REPO / "tests" / "data")
    ap.add_argument("--keep-work", type=Path, help="keep HF checkpoints etc. in this dir")
    ap.add_argument("--readme-only", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("COREHEAD_FIXTURE_THREADS", "1")))
    torch.use_deterministic_algorithms(True)

    fams = args.families or FAMILIES
    for f in fams:
        if f not in FAMILIES:
            ap.error(f"unknown family {f}")
    if not args.readme_only:
        for f in fams:
            out = args.out / f
            if out.exists():
                shutil.rmtree(out)
            out.mkdir(parents=True)
            work = (args.keep_work / f) if args.keep_work else Path(tempfile.mkdtemp(prefix=f"fx-{f}-"))
            if work.exists() and args.keep_work:
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            print(f"[{f}] building in {work}", flush=True)
            builder(f)(out, work, SEEDS[f])
            if f in NP_CHECKED:
                from fixtures import np_check

                np_check.check(out)
            if not args.keep_work:
                shutil.rmtree(work, ignore_errors=True)
            print(f"[{f}] done: {C.size_of(out) / 1e6:.2f} MB", flush=True)
    from fixtures import readme

    readme.write(args.out, FAMILIES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
