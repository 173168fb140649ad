#!/usr/bin/env python3
"""The science check of the toy VLM in torch (transformers eager attention + hooks).

    python tools/toy_science.py ~/.cache/corehead/toy-hf [--n 240] [--seed 7] [--json out.json]

On N held-out probes from `corehead.toy.probes(N, seed)` (seed < toy.TRAIN_SEED_BASE, so
never a training image):

1. accuracy: greedy generation, normalized exact match;
2. RAM per (layer, head), exactly as DESIGN §4 defines it: relevance r_j of visual token j
   = area(token's patch rectangle ∩ target bbox) / area(token rectangle); query set = the
   positions that predict the answer tokens (answer teacher-forced);
   RAM[l,h] = mean_t Σ_j r_j A[l,h][t,j], averaged over probes (eager attention,
   output_attentions=True). Also visual mass VM and focus = RAM / VM;
3. ablation: a forward pre-hook on each layer's o_proj zeroes the ablated heads' slices of
   its input; accuracy with the top / bottom p of heads by RAM zeroed and with random p
   (5 seeds, mean ± std), p = 5% and 10%, k = ceil(p · n_heads);
4. (diagnostic) the accuracy drop of every single-head ablation and its Spearman
   correlation with RAM.

Acceptance for corehead's demo model: accuracy ≥ 0.90; top-5% drop ≥ 30 points;
bottom-5% and mean random-5% drops ≤ 5 points.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "python"))
sys.path.insert(0, str(REPO / "tools"))
from train_toy_vlm import N_VISUAL, Tok, normalize, pixels  # noqa: E402

from corehead import toy  # noqa: E402


def load(hf_dir: str, threads: int):
    import torch
    from transformers import LlavaForConditionalGeneration

    torch.set_num_threads(threads)
    model = LlavaForConditionalGeneration.from_pretrained(hf_dir, attn_implementation="eager")
    model.eval()
    tok = Tok(Path(hf_dir) / "tokenizer.model")
    return model, tok


def text_layers(model):
    return model.model.language_model.layers


def relevance(bbox) -> np.ndarray:
    """r_j for the visual tokens (row-major grid of toy.CELL-pixel patches)."""
    x0, y0, x1, y1 = bbox
    r = np.zeros(N_VISUAL)
    for j in range(N_VISUAL):
        row, col = divmod(j, toy.GRID)
        tx0, ty0 = col * toy.CELL, row * toy.CELL
        ix = max(0.0, min(x1, tx0 + toy.CELL) - max(x0, tx0))
        iy = max(0.0, min(y1, ty0 + toy.CELL) - max(y0, ty0))
        r[j] = ix * iy / (toy.CELL * toy.CELL)
    return r


@contextmanager
def ablated(model, heads):
    """Zero the given (layer, head) outputs before each layer's o_proj."""
    layers = text_layers(model)
    hd = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(int(layer), []).append(int(h))
    hooks = []
    for layer, hs in by_layer.items():
        def pre(mod, args, hs=tuple(hs)):
            x = args[0].clone()
            for h in hs:
                x[..., h * hd : (h + 1) * hd] = 0
            return (x,) + tuple(args[1:])

        hooks.append(layers[layer].self_attn.o_proj.register_forward_pre_hook(pre))
    try:
        yield
    finally:
        for hk in hooks:
            hk.remove()


def first_token_correct(model, tok, probes, batch: int = 48) -> np.ndarray:
    """Fast path used for the many ablation conditions: every toy answer is one token
    followed by EOS, so greedy generation is correct iff argmax at the last prompt
    position is the answer token and argmax after it is EOS. Exactly equal to
    `greedy_answers` + normalized exact match for this vocabulary (checked in main)."""
    import torch

    ok = np.zeros(len(probes), bool)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(probes):
        groups.setdefault(len(tok.prompt(p["question"])), []).append(i)
    with torch.no_grad():
        for _, g in groups.items():
            for b0 in range(0, len(g), batch):
                gi = g[b0 : b0 + batch]
                ans = [tok.answer(probes[i]["answer"]) for i in gi]
                assert all(len(a) == 1 for a in ans)
                ids = torch.tensor([tok.prompt(probes[i]["question"]) + a for i, a in zip(gi, ans)])
                pv = torch.from_numpy(pixels([probes[i]["image"] for i in gi]))
                logits = model(input_ids=ids, pixel_values=pv).logits
                pred_a = logits[:, -2].argmax(-1).numpy()
                pred_e = logits[:, -1].argmax(-1).numpy()
                for k, i in enumerate(gi):
                    ok[i] = pred_a[k] == ans[k][0] and pred_e[k] == tok.eos
    return ok


def ram_scores(model, tok, probes, batch: int = 24):
    """RAM, VM per (layer, head) per probe: arrays [n_probes, L, H]."""
    import torch

    L = model.config.text_config.num_hidden_layers
    H = model.config.text_config.num_attention_heads
    ram = np.zeros((len(probes), L, H))
    vm = np.zeros((len(probes), L, H))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(probes):
        key = (len(tok.prompt(p["question"])), len(tok.answer(p["answer"])))
        groups.setdefault(key, []).append(i)
    with torch.no_grad():
        for (lp, la), g in groups.items():
            for b0 in range(0, len(g), batch):
                gi = g[b0 : b0 + batch]
                ids = torch.tensor([tok.prompt(probes[i]["question"]) + tok.answer(probes[i]["answer"]) for i in gi])
                pv = torch.from_numpy(pixels([probes[i]["image"] for i in gi]))
                out = model(input_ids=ids, pixel_values=pv, output_attentions=True)
                q = list(range(lp - 1, lp + la - 1))  # positions predicting answer tokens
                vis = slice(1, 1 + N_VISUAL)  # BOS, then the image tokens
                r = torch.tensor(np.stack([relevance(probes[i]["bbox"]) for i in gi]), dtype=torch.float32)
                for layer, att in enumerate(out.attentions):  # [B, H, T, T]
                    a = att[:, :, q, vis].float()  # [B, H, |Q|, n_visual]
                    ram[gi, layer] = torch.einsum("bhqj,bj->bhq", a, r).mean(-1).numpy()
                    vm[gi, layer] = a.sum(-1).mean(-1).numpy()
    return ram, vm


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description="toy VLM science check (accuracy, RAM, ablation)")
    ap.add_argument("hf_dir")
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=7, help="probe seed (< toy.TRAIN_SEED_BASE)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-head", action="store_true", help="also ablate every head alone")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    assert args.seed < toy.TRAIN_SEED_BASE
    t0 = time.time()
    model, tok = load(args.hf_dir, args.threads)
    probes = toy.probes(args.n, seed=args.seed)
    cfg = model.config.text_config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    n_heads = L * H

    from train_toy_vlm import greedy_answers

    gen = greedy_answers(model, tok, probes)
    correct = np.array([normalize(a) == normalize(p["answer"]) for a, p in zip(gen, probes)])
    fast = first_token_correct(model, tok, probes)
    assert (fast == correct).all(), "fast accuracy path disagrees with greedy generation"
    base = float(correct.mean())
    per_template = {t: float(correct[[p["template"] == t for p in probes]].mean()) for t in toy.TEMPLATES}
    print(f"held-out accuracy (greedy, n={args.n}): {base:.3f}  {per_template}", flush=True)

    ram_p, vm_p = ram_scores(model, tok, probes)
    ram, vm = ram_p.mean(0), vm_p.mean(0)
    ram_correct = ram_p[correct].mean(0) if correct.any() else ram
    focus = ram / np.maximum(vm, 1e-9)
    order = np.argsort(-ram.ravel())  # descending
    heads = [(int(i // H), int(i % H)) for i in order]
    print("RAM [layer x head]:")
    for layer in range(L):
        print(f"  L{layer}: " + " ".join(f"{v:.3f}" for v in ram[layer]))
    print("top heads by RAM: " + ", ".join(f"L{ly}H{h}={ram[ly, h]:.3f} (VM {vm[ly, h]:.2f})" for ly, h in heads[:8]))

    def acc_with(hs) -> float:
        with ablated(model, hs):
            return float(first_token_correct(model, tok, probes).mean())

    table = {}
    for p in (0.05, 0.10):
        k = math.ceil(p * n_heads)
        top = heads[:k]
        bottom = heads[-k:]
        rnd = []
        for s in range(5):
            rs = np.random.default_rng(1000 + s)
            pick = rs.choice(n_heads, size=k, replace=False)
            rnd.append(acc_with([(int(i // H), int(i % H)) for i in pick]))
        table[f"{int(p * 100)}%"] = {
            "k": k,
            "top_heads": [f"L{ly}H{h}" for ly, h in top],
            "bottom_heads": [f"L{ly}H{h}" for ly, h in bottom],
            "top": acc_with(top),
            "bottom": acc_with(bottom),
            "random_mean": float(np.mean(rnd)),
            "random_std": float(np.std(rnd)),
            "random": rnd,
        }
    print(f"\n| ablated | k | accuracy | drop (points) |\n|---|---|---|---|\n| none | 0 | {base:.3f} | 0 |")
    for name, row in table.items():
        print(f"| top {name} RAM | {row['k']} | {row['top']:.3f} | {100 * (base - row['top']):.1f} |")
        print(f"| bottom {name} RAM | {row['k']} | {row['bottom']:.3f} | {100 * (base - row['bottom']):.1f} |")
        print(f"| random {name} (5 seeds) | {row['k']} | {row['random_mean']:.3f} ± {row['random_std']:.3f} | "
              f"{100 * (base - row['random_mean']):.1f} |")
    r5 = table["5%"]
    ok = (base >= 0.90 and base - r5["top"] >= 0.30 and base - r5["bottom"] <= 0.05
          and base - r5["random_mean"] <= 0.05)
    print(f"\nacceptance (acc ≥ 0.90, top-5% drop ≥ 30, bottom/random-5% drop ≤ 5): {'PASS' if ok else 'FAIL'}")

    result = {
        "n": args.n, "seed": args.seed, "accuracy": base, "per_template": per_template,
        "ram": ram.tolist(), "ram_correct_only": ram_correct.tolist(), "vm": vm.tolist(),
        "focus": focus.tolist(), "ranking": [f"L{ly}H{h}" for ly, h in heads],
        "ablation": table, "pass": bool(ok),
    }
    if args.per_head:
        drop = np.zeros((L, H))
        for layer in range(L):
            for h in range(H):
                drop[layer, h] = base - acc_with([(layer, h)])
        rho = spearman(ram.ravel(), drop.ravel())
        print("single-head ablation drop (points):")
        for layer in range(L):
            print(f"  L{layer}: " + " ".join(f"{100 * v:5.1f}" for v in drop[layer]))
        print(f"Spearman(RAM, single-head drop) = {rho:.2f}")
        result["single_head_drop"] = drop.tolist()
        result["spearman_ram_drop"] = rho
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
