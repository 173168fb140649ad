#!/usr/bin/env python3
"""The science check of the toy VLM in torch (transformers eager attention + hooks).

    python -m tools.toy.science ~/.cache/corehead/toy-hf [--n 240] [--seed 7] [--json out.json]

On N held-out probes from `corehead.toy.probes(N, seed)` (seed < toy.TRAIN_SEED_BASE, so
never a training image):

1. accuracy: greedy generation, normalized exact match;
2. RAM per (layer, head), exactly as docs/architecture.md §4 defines it: relevance r_j of visual token j
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
bottom-5% and mean random-5% drops ≤ 5 points. `--draws N` adds the mean drop over N more
random head sets per fraction (a pass should not hinge on which 5 sets were drawn).

Engine parity (issue 7: "the same numbers computed with transformers agree with corehead's
within 2 points"), on exactly `corehead demo`'s setup — see docs/toy_parity.md:

    PYTHONPATH=.:<corehead with its _core> python -m tools.toy.science ~/.cache/corehead/toy-hf \
        --compare-corehead --threads 1 [--metric exact] [--f16-weights] [--json parity.json]

ranks the heads by RAM on the demo's 100 rank probes (seed 101) in both engines, then runs the
demo's ablation curve on its 200 eval probes (seed 202): metric "choice" (as the demo;
`--metric exact` for greedy generation), zero ablation, top / bottom 5% and 10% by each
engine's own ranking and the random sets of corehead.evaluate.curve_configs (seeds 0-4), and
prints the rows side by side with |Δ| in points and the probes whose result differs.
corehead's side goes through Engine.toy(), rank_heads and ablation_curve as the demo does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from corehead import toy  # the installed corehead, or PYTHONPATH=.:python with a fresh build
from tools.toy.train import N_VISUAL, Tok, normalize, pixels


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


def same_length_batches(tok, probes, batch: int):
    """Indices of `probes` in batches of at most `batch` whose prompts have the same length (grouped
    by length in first-seen order)."""
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(probes):
        groups.setdefault(len(tok.prompt(p["question"])), []).append(i)
    for g in groups.values():
        for b0 in range(0, len(g), batch):
            yield g[b0 : b0 + batch]


def first_token_correct(model, tok, probes, batch: int = 48) -> np.ndarray:
    """Fast path used for the many ablation conditions: every toy answer is one token
    followed by EOS, so greedy generation is correct iff argmax at the last prompt
    position is the answer token and argmax after it is EOS. Exactly equal to
    `greedy_answers` + normalized exact match for this vocabulary (checked in main)."""
    import torch

    ok = np.zeros(len(probes), bool)
    with torch.no_grad():
        for gi in same_length_batches(tok, probes, batch):
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


def random_sets(n_heads: int, k: int, H: int, seeds=range(1000, 1005)):
    """The random head sets of the table: one per seed (the same for both engines)."""
    out = []
    for s in seeds:
        pick = np.random.default_rng(s).choice(n_heads, size=k, replace=False)
        out.append([(int(i // H), int(i % H)) for i in pick])
    return out


# --- --compare-corehead: the demo's numbers computed by both engines ----------------------------

# `corehead demo`'s ablation settings (python/corehead/demo.py: eng.ablation_curve(ranking,
# eval_probes, fractions=(0.05, 0.1), seeds=5, method="zero"), seed=0 and metric=None -> "choice").
DEMO_FRACTIONS, DEMO_SEEDS, DEMO_SEED = (0.05, 0.1), 5, 0


def round_weights_to_f16(model) -> None:
    """Round every weight matrix to f16 and back, as the shipped GGUF stores them (llama.cpp's
    converter keeps 1-D tensors, i.e. norms and biases, in f32)."""
    import torch

    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(p.half().float())


def choice_logprobs(model, tok, probes, batch: int = 48) -> list[np.ndarray]:
    """Per probe, the log-likelihood of each of its choices (in `choices` order) after the prompt,
    as corehead.evaluate.choice_logprobs defines it: every toy choice (with the answer's leading
    space) is one token, so it is the log-softmax over the vocabulary at the last prompt position."""
    import torch

    out: list = [None] * len(probes)
    with torch.no_grad():
        for gi in same_length_batches(tok, probes, batch):
            ids = torch.tensor([tok.prompt(probes[i]["question"]) for i in gi])
            pv = torch.from_numpy(pixels([probes[i]["image"] for i in gi]))
            lp = torch.log_softmax(model(input_ids=ids, pixel_values=pv).logits[:, -1].double(), -1).numpy()
            for row, i in zip(lp, gi):
                choice_ids = [tok.answer(c) for c in probes[i]["choices"]]
                assert all(len(c) == 1 for c in choice_ids), "a toy choice is not one token"
                out[i] = np.array([row[c[0]] for c in choice_ids])
    return out


def choice_scores(model, tok, probes, batch: int = 48):
    """metric="choice" as corehead.evaluate defines it: the probe is correct when, among its
    choices, the one with the highest log-likelihood after the prompt is the answer.
    Returns (correct [n] bool, picked choice per probe, margin [n]: best minus second-best
    log-probability, i.e. how close the decision was)."""
    n = len(probes)
    correct, margin, picked = np.zeros(n, bool), np.zeros(n), [""] * n
    for i, s in enumerate(choice_logprobs(model, tok, probes, batch)):
        best = int(np.argmax(s))
        picked[i] = probes[i]["choices"][best]
        correct[i] = picked[i] == probes[i]["answer"]
        margin[i] = s[best] - np.partition(s, -2)[-2]
    return correct, picked, margin


def exact_scores(model, tok, probes, max_tokens: int = 16):
    """metric="exact" as corehead.evaluate defines it: greedy generation (at most `max_tokens`
    tokens, stopping at EOS); correct when its first non-empty line, normalized
    (corehead.ram.normalize_answer), equals the answer. Returns (correct, answers, None)."""
    from corehead.ram import normalize_answer
    from tools.toy.train import greedy_answers

    texts = greedy_answers(model, tok, probes, max_new=max_tokens)
    correct = []
    for t, p in zip(texts, probes):
        lines = [line for line in t.strip().splitlines() if line.strip()]
        correct.append(bool(lines) and normalize_answer(lines[0]) == normalize_answer(p["answer"]))
    return np.array(correct, bool), [t.strip() for t in texts], None


def tf_ranking(model, tok, probes):
    """corehead.HeadRanking from this file's transformers RAM (same definition, docs/architecture.md §4), so that
    the top / bottom sets are selected by corehead's own HeadRanking.top/bottom (ties included)."""
    from corehead.ram import HeadRanking

    ram_p, vm_p = ram_scores(model, tok, probes)
    chance = float(np.mean([relevance(p["bbox"]).sum() / N_VISUAL for p in probes]))
    cfg = model.config.text_config
    return HeadRanking(ram=ram_p.mean(0), visual_mass=vm_p.mean(0), chance=chance, n_probes=len(probes),
                       n_head_kv=cfg.num_key_value_heads)


def tf_curve(model, tok, ranking, probes, metric: str = "choice") -> dict:
    """The demo's ablation curve in transformers: the same configurations (corehead.evaluate.
    curve_configs: top/bottom of `ranking`, random sets = first k of
    numpy.random.default_rng(0 + s).permutation(48)), zero ablation by o_proj pre-hooks."""
    from corehead.evaluate import BASELINES, curve_configs

    cfg = model.config.text_config
    info = {"n_layer": cfg.num_hidden_layers, "n_head": cfg.num_attention_heads,
            "n_head_kv": cfg.num_key_value_heads}
    configs = curve_configs(ranking, info, DEMO_FRACTIONS, BASELINES, DEMO_SEEDS, "zero", DEMO_SEED)
    score = choice_scores if metric == "choice" else exact_scores
    base, picked, margin = score(model, tok, probes)
    done: dict[tuple, np.ndarray] = {}
    runs = []
    for frac, b, s, heads in configs:
        key = tuple(sorted(heads))
        if key not in done:
            with ablated(model, heads):
                done[key] = score(model, tok, probes)[0]
        runs.append({"fraction": frac, "baseline": b, "seed": s, "k": len(heads), "heads": [list(h) for h in heads],
                     "accuracy": float(done[key].mean()), "correct": done[key].tolist()})
    return {"base_accuracy": float(base.mean()), "base_correct": base.tolist(), "base_answers": picked,
            "base_margin": None if margin is None else margin.tolist(), "runs": runs}


def corehead_demo_side(threads: int, rank_items, eval_items, metric: str = "choice") -> dict:
    """corehead's numbers through the demo's own calls (Engine.toy, rank_heads, ablation_curve),
    plus each configuration's per-probe results (eng.evaluate under eng.ablated: what
    ablation_curve runs inside) for the probe-level agreement."""
    import corehead
    from corehead.evaluate import BASELINES

    with corehead.Engine.toy(n_threads=threads) as eng:
        ranking = eng.rank_heads(toy.as_probes(rank_items, eng.image_marker), progress=False)
        ev = toy.as_probes(eval_items, eng.image_marker)
        curve = eng.ablation_curve(ranking, ev, fractions=DEMO_FRACTIONS, baselines=BASELINES, seeds=DEMO_SEEDS,
                                   method="zero", metric=metric, seed=DEMO_SEED, progress=False)
        per: dict[tuple, list] = {}
        for r in curve.runs:
            key = tuple(sorted(map(tuple, r["heads"])))
            if key not in per:
                with eng.ablated(r["heads"], method="zero"):
                    rep = eng.evaluate(ev, metric=metric, progress=False)
                per[key] = rep.correct.tolist()
                assert math.isclose(rep.accuracy, r["accuracy"]), "evaluate disagrees with ablation_curve"
        runs = [{**r, "heads": [list(h) for h in r["heads"]], "correct": per[tuple(sorted(map(tuple, r["heads"])))]}
                for r in curve.runs]
        info = eng.info
        return {"ranking": ranking, "base_accuracy": curve.base_accuracy, "metric": curve.metric,
                "base_correct": curve.base_report.correct.tolist(),
                "base_answers": [a.strip() for a in curve.base_report.answers], "runs": runs,
                "engine": {k: info.get(k) for k in ("backend", "n_threads", "file_type")}}


def check_checkpoint(hf_dir: str) -> dict:
    """Is `hf_dir` the checkpoint the packaged GGUF was converted from? Compares every tensor the
    converter copies without reordering (all but the text q/k projections, which it permutes for
    RoPE) with the GGUF's: f16 tensors must equal the checkpoint's rounded to f16, f32 ones
    must be bit-identical. Needs the `gguf` package."""
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    import corehead

    sd = load_file(str(Path(hf_dir).expanduser() / "model.safetensors"))
    toy_dir = Path(corehead.__file__).parent / "models" / "toy"
    gg = {}
    for f in sorted(toy_dir.glob("*.gguf")):
        gg.update({t.name: t for t in GGUFReader(str(f)).tensors})
    lm, vt = "language_model.model.layers.", "vision_tower.encoder.layers."
    pairs = {"token_embd.weight": "language_model.model.embed_tokens.weight",
             "output.weight": "language_model.lm_head.weight", "output_norm.weight": "language_model.model.norm.weight",
             "v.patch_embd.weight": "vision_tower.embeddings.patch_embedding.weight",
             "v.patch_embd.bias": "vision_tower.embeddings.patch_embedding.bias",
             "v.position_embd.weight": "vision_tower.embeddings.position_embedding.weight"}
    for i in range(6):
        for a, b in (("attn_output", "self_attn.o_proj"), ("attn_v", "self_attn.v_proj"), ("ffn_down", "mlp.down_proj"),
                     ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"), ("attn_norm", "input_layernorm"),
                     ("ffn_norm", "post_attention_layernorm")):
            pairs[f"blk.{i}.{a}.weight"] = f"{lm}{i}.{b}.weight"
    for i in range(2):
        for a, b in (("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
                     # llama.cpp's clip names: fc1 -> ffn_down, fc2 -> ffn_up (sic)
                     ("attn_out", "self_attn.out_proj"), ("ffn_down", "mlp.fc1"), ("ffn_up", "mlp.fc2"),
                     ("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
            for w in ("weight", "bias"):
                pairs[f"v.blk.{i}.{a}.{w}"] = f"{vt}{i}.{b}.{w}"
    for a, b in (("mm.0", "multi_modal_projector.linear_1"), ("mm.2", "multi_modal_projector.linear_2")):
        for w in ("weight", "bias"):
            pairs[f"{a}.{w}"] = f"{b}.{w}"
    worst, n = 0.0, 0
    for g, h in pairs.items():
        if g not in gg or h not in sd:
            continue
        x = np.asarray(gg[g].data)
        y = sd[h].astype(np.float32).reshape(x.shape)
        if x.dtype == np.float16:
            y = y.astype(np.float16)
        worst = max(worst, float(np.abs(x.astype(np.float32) - y.astype(np.float32)).max()))
        n += 1
    return {"tensors_compared": n, "of": len(gg), "max_abs_diff": worst, "same_model": n >= 40 and worst == 0.0}


def _rows(side: dict) -> list[tuple]:
    """(label, k, accuracy, std, per-probe correct or None) per table row, in the demo's order."""
    from corehead.evaluate import BASELINES

    out = [("unablated", 0, side["base_accuracy"], None, side["base_correct"])]
    for frac in DEMO_FRACTIONS:
        for b in BASELINES:
            rs = [r for r in side["runs"] if math.isclose(r["fraction"], frac) and r["baseline"] == b]
            accs = [r["accuracy"] for r in rs]
            if b == "random":
                out.append((f"random {frac:.0%} (mean of {len(rs)} seeds)", rs[0]["k"], float(np.mean(accs)),
                            float(np.std(accs)), None))
                out += [(f"random {frac:.0%}, seed {r['seed']}", r["k"], r["accuracy"], None, r["correct"])
                        for r in rs]
            else:
                out.append((f"{b} {frac:.0%} by RAM", rs[0]["k"], accs[0], None, rs[0]["correct"]))
    return out


def compare_corehead(args) -> dict:
    """Transformers (eager attention, o_proj pre-hooks) vs corehead on exactly the demo's setup."""
    from corehead.demo import EVAL_PROBES, EVAL_SEED, RANK_PROBES, RANK_SEED

    t0 = time.time()
    ckpt = check_checkpoint(args.hf_dir)
    print(f"checkpoint vs packaged GGUF: {ckpt['tensors_compared']} of {ckpt['of']} tensors (all but the permuted "
          f"text q/k), max |Δ| {ckpt['max_abs_diff']:g} "
          f"-> {'the same model' if ckpt['same_model'] else 'NOT the packaged model'}")
    model, tok = load(args.hf_dir, args.threads)
    if args.f16_weights:
        round_weights_to_f16(model)
    rank_items = toy.probes(RANK_PROBES, seed=RANK_SEED)
    eval_items = toy.probes(EVAL_PROBES, seed=EVAL_SEED)
    tf_rank = tf_ranking(model, tok, rank_items)
    tf = tf_curve(model, tok, tf_rank, eval_items, args.metric)
    t_tf = time.time() - t0
    ch = corehead_demo_side(args.threads, rank_items, eval_items, args.metric)
    t_ch = time.time() - t0 - t_tf
    ch_rank = ch.pop("ranking")

    def names(hs):
        return [f"L{a}H{b}" for a, b in hs]

    sets = {}
    for frac in DEMO_FRACTIONS:
        for which in ("top", "bottom"):
            a, c = getattr(tf_rank, which)(frac), getattr(ch_rank, which)(frac)
            sets[f"{which} {frac:.0%}"] = {"transformers": names(a), "corehead": names(c),
                                           "same_set": sorted(a) == sorted(c)}
    dram = np.abs(tf_rank.ram - ch_rank.ram)
    weights = "f32 (HF checkpoint)" + (" rounded to f16" if args.f16_weights else "")
    print(f"== transformers {weights}, eager attention, o_proj pre-hooks  vs  corehead {ch['engine']}")
    rho = spearman(tf_rank.ram.ravel(), ch_rank.ram.ravel())
    print(f"RAM on {RANK_PROBES} probes (seed {RANK_SEED}): max |ΔRAM| {dram.max():.1e} "
          f"(RAM max {ch_rank.ram.max():.3f}); Spearman over {dram.size} heads {rho:.4f}")
    for who, rk in (("transformers", tf_rank), ("corehead", ch_rank)):
        print(f"top 8 by RAM, {who:12s}: " + ", ".join(f"L{a}H{b}={rk.ram[a, b]:.3f}" for a, b in rk.order()[:8]))
    for name, s in sets.items():
        print(f"{name} set: {'same' if s['same_set'] else 'DIFFERENT'}  transformers {s['transformers']}, "
              f"corehead {s['corehead']}")
    print(f"\nablation on {EVAL_PROBES} probes (seed {EVAL_SEED}), metric {ch['metric']}, zero ablation; "
          "accuracy (drop in points)")
    print("| ablated | k | transformers | corehead | Δ (points) | probes that differ |\n|---|---|---|---|---|---|")
    worst, rows = 0.0, []
    tf_base, ch_base = tf["base_accuracy"], ch["base_accuracy"]
    for (label, k, a, sa, ca), (_, _, c, sc, cc) in zip(_rows(tf), _rows(ch)):
        d = 100 * (a - c)
        worst = max(worst, abs(d))
        differ = int(np.sum(np.asarray(ca) != np.asarray(cc))) if ca is not None else None

        def fmt(acc, sd, base):
            return f"{acc:.3f}" + (f" ± {sd:.3f}" if sd is not None else "") + f" ({100 * (base - acc):.1f})"

        print(f"| {label} | {k} | {fmt(a, sa, tf_base)} | {fmt(c, sc, ch_base)} | {d:+.1f} | "
              f"{'' if differ is None else differ} |")
        rows.append({"row": label, "k": k, "transformers": a, "corehead": c, "transformers_std": sa,
                     "corehead_std": sc, "delta_points": d, "probes_differ": differ})
    print(f"\nmax |Δ| over all rows: {worst:.1f} points (acceptance: ≤ 2)  -> {'PASS' if worst <= 2 else 'FAIL'}")
    n_diff = sum(a != b for a, b in zip(tf["base_answers"], ch["base_answers"]))
    print(f"unablated: {n_diff} probes where the engines answer differently" + (
        f"; smallest transformers log-prob margins {np.round(np.sort(tf['base_margin'])[:3], 3).tolist()}"
        if tf["base_margin"] is not None else ""))
    print(f"(transformers {t_tf:.0f} s, corehead {t_ch:.0f} s)")
    return {"setup": {"rank_probes": [RANK_PROBES, RANK_SEED], "eval_probes": [EVAL_PROBES, EVAL_SEED],
                      "fractions": list(DEMO_FRACTIONS), "seeds": DEMO_SEEDS, "seed": DEMO_SEED, "method": "zero",
                      "metric": ch["metric"], "hf_dir": str(args.hf_dir), "transformers_weights": weights,
                      "corehead": ch["engine"]},
            "ram": {"transformers": tf_rank.ram.tolist(), "corehead": ch_rank.ram.tolist(),
                    "max_abs_diff": float(dram.max()), "spearman": rho},
            "checkpoint": ckpt, "head_sets": sets, "rows": rows, "max_abs_delta_points": worst, "pass": worst <= 2,
            "transformers": tf, "corehead": ch}


# --- --write-test-ref: what tests/test_toy.py checks corehead against (no torch in the tests) ----

TEST_REF_RANK = (32, 6)  # (n, seed) of the RAM probes
TEST_REF_EVAL = (32, 5)  # (n, seed) of the choice-scoring probes


def write_test_reference(args) -> dict:
    """transformers' (f32 HF checkpoint, eager attention, o_proj pre-hooks) RAM over the
    TEST_REF_RANK probes, its top / bottom 5% heads (corehead's HeadRanking selection), and
    every TEST_REF_EVAL probe's choice log-probabilities unablated and with those heads zeroed."""
    import torch
    import transformers

    model, tok = load(args.hf_dir, args.threads)
    rank_items = toy.probes(TEST_REF_RANK[0], seed=TEST_REF_RANK[1])
    eval_items = toy.probes(TEST_REF_EVAL[0], seed=TEST_REF_EVAL[1])
    rk = tf_ranking(model, tok, rank_items)
    order = rk.order()
    k = len(rk.top(0.05))
    sets = {"none": [], "top5": [list(h) for h in rk.top(0.05)], "bottom5": [list(h) for h in rk.bottom(0.05)]}
    logprobs = {}
    for name, heads in sets.items():
        with ablated(model, heads):
            logprobs[name] = [lp.tolist() for lp in choice_logprobs(model, tok, eval_items)]
    return {
        "generated_by": "python -m tools.toy.science ~/.cache/corehead/toy-hf --write-test-ref "
                        "tests/data/toy_transformers_ref.json",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "weights": "f32 HF checkpoint of the shipped toy model (its f16 matrices equal the GGUF's)",
        "rank_probes": {"n": TEST_REF_RANK[0], "seed": TEST_REF_RANK[1]},
        "eval_probes": {"n": TEST_REF_EVAL[0], "seed": TEST_REF_EVAL[1]},
        "ram": rk.ram.tolist(), "visual_mass": rk.visual_mass.tolist(), "chance": rk.chance,
        # RAM gap across the top-5% / bottom-5% boundaries: how far the sets are from a tie
        "top5_gap": float(rk.ram[order[k - 1]] - rk.ram[order[k]]),
        "bottom5_gap": float(rk.ram[order[-k - 1]] - rk.ram[order[-k]]),
        "heads": sets, "choice_logprobs": logprobs,
    }


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
    ap.add_argument("--draws", type=int, default=0,
                    help="also estimate the expected random-p drop from this many random head sets")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare-corehead", action="store_true",
                    help="instead: compute `corehead demo`'s RAM ranking and ablation table with transformers "
                         "and with corehead (the package's toy GGUF) and print them side by side")
    ap.add_argument("--metric", default="choice", choices=["choice", "exact"],
                    help="with --compare-corehead: the demo's 'choice' (log-likelihood of each choice) or "
                         "'exact' (greedy generation, normalized exact match)")
    ap.add_argument("--write-test-ref", default=None, metavar="JSON",
                    help="instead: write the transformers reference tests/test_toy.py checks corehead against")
    ap.add_argument("--f16-weights", action="store_true",
                    help="with --compare-corehead: round the HF weight matrices to f16 as the GGUF stores them")
    args = ap.parse_args()
    assert args.seed < toy.TRAIN_SEED_BASE
    if args.write_test_ref:
        Path(args.write_test_ref).write_text(json.dumps(write_test_reference(args), indent=None) + "\n")
        return
    if args.compare_corehead:
        result = compare_corehead(args)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        return
    t0 = time.time()
    model, tok = load(args.hf_dir, args.threads)
    probes = toy.probes(args.n, seed=args.seed)
    cfg = model.config.text_config
    L, H = cfg.num_hidden_layers, cfg.num_attention_heads
    n_heads = L * H

    from tools.toy.train import greedy_answers

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
        rnd = [acc_with(hs) for hs in random_sets(n_heads, k, H)]
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
    if args.draws:
        # The 5 fixed seeds above are what the acceptance names; this is the expectation over
        # random head sets (so that a pass is not a matter of which 5 sets were drawn).
        for name, row in table.items():
            k = row["k"]
            rs = np.random.default_rng(5000 + k)
            drops = []
            for _ in range(args.draws):
                pick = rs.choice(n_heads, size=k, replace=False)
                drops.append(base - acc_with([(int(i // H), int(i % H)) for i in pick]))
            drops = 100 * np.asarray(drops)
            row["random_draws"] = {"n": args.draws, "mean_drop": float(drops.mean()),
                                   "sem": float(drops.std(ddof=1) / math.sqrt(len(drops))),
                                   "p_drop_gt_5": float((drops > 5).mean()), "max_drop": float(drops.max())}
            d = row["random_draws"]
            print(f"random {name} over {args.draws} head sets: mean drop {d['mean_drop']:.1f} ± {d['sem']:.1f} "
                  f"(s.e.m.) points; {100 * d['p_drop_gt_5']:.0f}% of sets drop > 5; max {d['max_drop']:.1f}")
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
