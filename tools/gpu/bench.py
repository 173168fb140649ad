"""GPU speed in one short run: corehead on a GPU backend against llama.cpp's CUDA tools built from
the same ggml (tools/gpu_check.sh), on random-weight models with real shapes written here without
torch (tools/fixtures/synthetic_gguf.py):

- text: Llama-3.2-1B shapes (16 layers, 2048 wide, 32/8 heads, 8192 FFN, 128256-token vocabulary),
  Q4_K_M by llama-quantize: prefill 512 and decode 128 tokens/s, corehead timed as llama-bench
  times itself (tools/bench/text.py), vs llama-bench -ngl 99;
- vision: a LLaVA-1.5-style CLIP ViT-L/14-336 mmproj (f16, 576 visual tokens) on that text model:
  image encode time and time to first token, corehead vs llama-mtmd-cli -ngl 99;
- sparse: 16 images (9216 visual tokens) dense vs CoRe-sparse with 10% CoRe KV heads: TTFT,
  decode tokens/s and KV bytes (tools/bench/sparse.py's worker, each in its own process).

    COREHEAD_BACKEND=cuda COREHEAD_LLAMA_CPP_BIN=<llama.cpp bin> python -m tools.gpu.bench --out gpu-bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TEXT_SHAPE = dict(arch="llama", n_layer=16, n_embd=2048, n_head=32, n_head_kv=8, n_ff=8192, n_ctx=16384)
N_VOCAB = 128256
VIT = dict(projector="mlp", n_layer=24, n_embd=1024, n_head=16, n_ff=4096, image_size=336, patch=14)


def synthetic_vocab(path: Path, n_vocab: int) -> Path:
    """A vocabulary-only GGUF of n_vocab SentencePiece-style tokens (specials, 256 byte tokens,
    then plain pieces): the real vocabulary size without the real vocabulary file."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tokens += [f"▁t{i}" for i in range(n_vocab - len(tokens))]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(n_vocab - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (n_vocab - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return path


# --smoke: the same pipeline on small shapes, to try the script on a CPU.
SMOKE_TEXT = dict(TEXT_SHAPE, n_layer=2, n_embd=256, n_head=4, n_head_kv=2, n_ff=512)
SMOKE_VIT = dict(VIT, n_layer=2, n_embd=128, n_head=4, n_ff=256)


def build_models(work: Path, quantize: Path, text: dict, vit: dict) -> tuple[Path, Path]:
    from tools.fixtures.synthetic_gguf import write_mmproj, write_text_model

    tag = f"{text['n_layer']}x{text['n_embd']}"
    q4 = work / f"llama-{tag}-Q4_K_M.gguf"
    mmproj = work / f"mmproj-vit-{vit['n_layer']}x{vit['n_embd']}-f16.gguf"
    if not q4.exists():
        f16 = work / f"llama-{tag}-f16.gguf"
        vocab = synthetic_vocab(work / "vocab.gguf", N_VOCAB)
        write_text_model(f16, dtype=np.float16, vocab_file=vocab, std=0.02, **text)
        subprocess.run([str(quantize), str(f16), str(q4), "Q4_K_M"], check=True, capture_output=True)
        f16.unlink()
    if not mmproj.exists():
        write_mmproj(mmproj, dtype=np.float16, n_out=text["n_embd"], **vit)
    return q4, mmproj


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if a and b else None


def bench_text(model: Path, threads: int, reps: int) -> dict:
    from tools.bench.text import bench_corehead, prompt_ids
    from tools.peers import native_peer

    ours = bench_corehead(model, prompt_ids(N_VOCAB, 512), 128, threads, reps)
    try:
        peer = native_peer.llama_bench(model, threads, reps=reps, extra=["-ngl", "99"])
    except Exception as e:  # a peer crash is a row, never the end of the run
        peer = {"error": f"{type(e).__name__}: {e}"}
    return {"corehead": ours, "llama-bench": peer,
            "prefill_ratio": _ratio(ours["prefill_tok_s"], peer.get("prefill_tok_s", 0)),
            "decode_ratio": _ratio(ours["tg_from_empty_tok_s"], peer.get("decode_tok_s", 0))}


def bench_vision(model: Path, mmproj: Path, threads: int, reps: int) -> dict:
    from PIL import Image

    from corehead import Engine
    from tools.peers import native_peer

    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, size=(336, 336, 3), dtype=np.uint8) for _ in range(reps + 1)]
    question = "Describe the image."
    with Engine(model, mmproj=mmproj, n_threads=threads, n_ctx=2048) as eng:
        eng.set_image_cache(0)  # every encode is a real one
        eng.encode_image(imgs[0])  # warm-up
        enc, ttft = [], []
        for img in imgs[1:]:
            t = time.perf_counter()
            eng.encode_image(img)
            enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            eng.generate_ids(eng.image_marker + question, images=[img], max_tokens=1, stop_at_eog=False)
            ttft.append(time.perf_counter() - t)
        placement = eng.info["placement"]
    ours = {"encode_s": statistics.median(enc), "ttft_s": statistics.median(ttft)}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "image.png"
        Image.fromarray(imgs[1]).save(png)
        try:
            peer = native_peer.mtmd_cli(model, mmproj, [png], "<__media__>" + question, threads, 16, n_ctx=2048,
                                        extra=["--chat-template", "chatml", "-ngl", "99"])
            peer["encode_s"] = sum(peer["encode_ms"]) / 1000
        except Exception as e:
            peer = {"error": f"{type(e).__name__}: {e}"}
    return {"corehead": ours, "llama-mtmd-cli": peer, "placement": placement,
            "encode_ratio": _ratio(peer.get("encode_s", 0), ours["encode_s"]),
            "ttft_ratio": _ratio(peer.get("ttft_s", 0), ours["ttft_s"])}


def bench_sparse(model: Path, mmproj: Path, threads: int, n_images: int, text: dict) -> dict:
    from tools.bench.sparse import _run, core_kv_choice

    n_ctx = n_images * 577 + 256
    base = {"model": str(model), "mmproj": str(mmproj), "threads": threads, "n_ctx": n_ctx, "n_images": n_images,
            "side": 336, "n_gen": 64, "mode": "corehead"}
    dense = _run(base)
    kv = core_kv_choice(list(range(text["n_layer"])), text["n_head_kv"], 0.10)
    sparse = _run({**base, "core_kv": kv})
    out = {"n_images": n_images, "core_kv_heads": len(kv), "dense": dense, "sparse": sparse}
    if "decode_tok_s" in dense and "decode_tok_s" in sparse:
        out["decode_speedup"] = _ratio(sparse["decode_tok_s"], dense["decode_tok_s"])
        out["ttft_warm_ratio"] = _ratio(sparse["ttft_warm_s"], dense["ttft_warm_s"])
        out["kv_bytes_ratio"] = _ratio(sparse["kv_bytes"], dense["kv_bytes"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "corehead-gpu-bench")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--only", nargs="*", default=["text", "vision", "sparse"])
    ap.add_argument("--smoke", action="store_true", help="small shapes: try the pipeline on a CPU")
    a = ap.parse_args(argv)
    from tools.peers import native_peer

    a.work.mkdir(parents=True, exist_ok=True)
    result: dict = {"backend": os.environ.get("COREHEAD_BACKEND", "auto"), "threads": a.threads}
    t0 = time.perf_counter()
    text, vit = (SMOKE_TEXT, SMOKE_VIT) if a.smoke else (TEXT_SHAPE, VIT)
    result["shapes"] = {"text": text, "vision": vit}
    model, mmproj = build_models(a.work, native_peer.bin_dir() / "llama-quantize", text, vit)
    result["build_models_s"] = round(time.perf_counter() - t0, 1)
    steps = {"text": lambda: bench_text(model, a.threads, a.reps),
             "vision": lambda: bench_vision(model, mmproj, a.threads, a.reps),
             "sparse": lambda: bench_sparse(model, mmproj, a.threads, a.images, text)}
    for name in a.only:
        t = time.perf_counter()
        try:
            result[name] = steps[name]()
        except Exception as e:
            result[name] = {"error": f"{type(e).__name__}: {e}"}
        result[name]["seconds"] = round(time.perf_counter() - t, 1)
        print(name, json.dumps(result[name])[:1500], flush=True)
        a.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
