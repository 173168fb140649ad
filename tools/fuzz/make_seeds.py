"""Seed corpora for the fuzz targets, from the test fixtures (tests/data).

    python -m tools.fuzz.make_seeds OUT_DIR     # writes OUT_DIR/gguf/* and OUT_DIR/image/*

GGUF seeds are small (<= ~140 KB, so libFuzzer mutates the metadata rather than weight bytes):
every fixture mmproj (f16) plus, for every fixture language model, a shrunken model of the same
architecture that carries the fixture's real tokenizer (SentencePiece or byte-level BPE).
Image seeds follow fuzz_image.cpp's input layout: each fixture image for each vision family, odd
shapes (1xN, Nx1, primes) and direct resize/crop requests.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tools.fixtures.synthetic_gguf import write_text_model

REPO = Path(__file__).resolve().parents[2]

DATA = REPO / "tests" / "data"


def gguf_seeds(out: Path) -> None:
    import gguf

    out.mkdir(parents=True, exist_ok=True)
    for mmproj in sorted(DATA.glob("*/mmproj-f16.gguf")):
        (out / f"mmproj-{mmproj.parent.name}.gguf").write_bytes(mmproj.read_bytes())
    for model in sorted(DATA.glob("*/model-f16.gguf")):
        arch = gguf.GGUFReader(str(model)).fields["general.architecture"].contents()
        write_text_model(out / f"text-{model.parent.name}.gguf", arch=arch, n_layer=1 if arch != "gemma3" else 6,
                         n_embd=16, n_head=2, n_head_kv=1, n_ff=32, dtype=np.float16, vocab_file=model)
    write_text_model(out / "text-llama-tinyspm.gguf", arch="llama", n_layer=1, n_embd=16, n_head=2, n_head_kv=1,
                     n_ff=32, dtype=np.float32, tied=True)


def image_seed(mode: int, sel: int, w: int, h: int, flags: int = 0, target=(0, 0), crop=(0, 0),
               pixels: bytes = b"") -> bytes:
    return struct.pack("<BBHHBHHHH", mode, sel, w, h, flags, target[0], target[1], crop[0], crop[1]) + pixels


def image_seeds(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(DATA.glob("*/image.png"))]
    n_families = len(list(DATA.glob("*/mmproj-f16.gguf")))
    k = 0
    for fam in range(n_families):
        for a in images:
            h, w = a.shape[:2]
            (out / f"s{k:03d}").write_bytes(image_seed(0, fam, w, h, pixels=a.tobytes()))
            k += 1
        for w, h in [(1, 1), (1, 300), (300, 1), (7, 5), (61, 17), (33, 200)]:
            (out / f"s{k:03d}").write_bytes(image_seed(0, fam, w, h, pixels=images[0][:h, :w].tobytes() or b"\x80"))
            k += 1
    for flt in range(3):
        a = images[flt % len(images)]
        h, w = a.shape[:2]
        for target, crop in [((w // 2, h // 3), (3, 5)), ((2 * w + 1, h), (0, 0)), ((1, 1), (w - 1, h - 1)),
                             ((w, 3 * h), (1, 2))]:
            (out / f"s{k:03d}").write_bytes(image_seed(1, flt, w, h, target=target, crop=crop, pixels=a.tobytes()))
            k += 1


def main() -> None:
    out = Path(sys.argv[1])
    gguf_seeds(out / "gguf")
    image_seeds(out / "image")
    for d in ("gguf", "image"):
        files = list((out / d).iterdir())
        print(f"{out / d}: {len(files)} seeds, largest {max(f.stat().st_size for f in files)} bytes")


if __name__ == "__main__":
    main()
