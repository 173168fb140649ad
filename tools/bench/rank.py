"""`python -m tools.bench rank`: per-probe time and peak memory of `rank_heads` (issue 5).

Three sides, each measured in its own fresh process (so each has its own peak RSS), on the same
model, probes, threads and prompt (one image + a 64-token question + a short teacher-forced
answer, query = "answer", corehead's image-embedding cache off so every probe encodes its image):

- rank: `corehead.rank_heads(eng, [probe])` per probe (preprocess + encode + prefill with the
  attention taps reduced on the graph to RAM / visual mass);
- prefill: a plain corehead prefill of the same prompt + answer (`eng.logits(prompt + answer,
  images=[image])`): target rank / prefill <= 1.2x;
- transformers: the same RAM with transformers eager attention in float32: image processor, the
  base model's forward with `output_attentions=True` (no LM head), then the docs/architecture.md §4 reduction of
  the answer rows with the same relevance vectors (taken from corehead; computing them is
  microseconds): target >= 10x slower and >= 5x more peak memory than rank.

Per-probe time = median over the probes after one warm-up probe. Peak RSS = the process's high-water
mark VmHWM (model load included); "during probes" = the high-water mark after resetting it once the
model is loaded and warmed up (/proc/self/clear_refs), i.e. the loaded model plus what scoring adds,
without load-time transients. The RAM arrays of the two engines are compared (max |Δ|): it is the
same computation.

Models: the test fixtures (tests/data, f32 GGUF + f32 mmproj; the transformers model is the fixture's
own HF model, rebuilt by tools/refs/ablation.rebuild, so the fixture image's preprocessed
tensors are reused and its preprocessing is not timed: 96x64 px) and random-weight models with
SmolVLM-256M and Qwen2-VL-2B shapes, built once with transformers (weights stored f16) and
converted with llama.cpp's convert_hf_to_gguf.py into ~/.cache/corehead/bench/rank-*/: corehead
runs the f16 GGUF (exactly the weights transformers upcasts to f32) and the text model quantized
to Q4_K_M by llama.cpp (mmproj f16).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench.common import (
    CACHE,
    REPO,
    in_child,
    peak_rss_mib,
    quantize_with_llama_cpp,
    random_init,
    reset_peak_rss,
    update_benchmarks_md,
    write_result,
)
from tools.fixtures import VISION_FAMILIES
from tools.fixtures import common as C

FIXTURES = tuple(VISION_FAMILIES)
BIG = ("smolvlm-256m", "qwen2vl-2b")
ANSWER = " a red square"
N_QUESTION = 64
_WORDS = ("what color is the small object left of the large square near the top right corner of the picture "
          "and where is the blue circle below it in this image please answer with one word").split()

TEMPLATES = {
    "idefics3": "User:<__media__>{q}<end_of_utterance>\nAssistant:",
    "qwen2vl": "<|im_start|>user\n<__media__>{q}<|im_end|>\n<|im_start|>assistant\n",
}


# --- measurement helpers (run inside the child processes) --------------------------------------


def _in_child(fn, *args, timeout: float | None = None):
    """bench.in_child, with a failure (an exception, an out-of-memory kill, the timeout) returned as
    {"error": ...} so that one model's failure is reported in its row instead of ending the run."""
    try:
        return in_child(fn, *args, timeout=timeout)
    except TimeoutError:
        return {"error": f"did not finish in {timeout:.0f} s"}
    except Exception as e:  # noqa: BLE001 - report what did not fit instead of aborting the bench
        return {"error": f"{type(e).__name__}: {e}"}


# --- models ------------------------------------------------------------------------------------


def _build_smolvlm(work: Path, edge: int = 1024):
    """Random weights with SmolVLM-256M's shapes (f16); `edge` = the processor's longest edge."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    specials = ["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"] + [
        f"<row_{i + 1}_col_{j + 1}>" for i in range(6) for j in range(6)]
    # mtmd's idefics3 layout starts every image with a "\n\n" token (SmolLM2's vocabulary has one).
    sp = C.train_spm(work / "sp", specials + ["\n\n"])
    tok, _ = C.spm_tokenizer_dir(work / "tok", sp, specials)
    vcfg = Idefics3VisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                image_size=512, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu_pytorch_tanh")
    tcfg = LlamaConfig(vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5,
                       rope_theta=100000.0, bos_token_id=1, eos_token_id=2, architectures=["LlamaForCausalLM"])
    cfg = Idefics3Config(vision_config=vcfg, text_config=tcfg, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         scale_factor=4, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = Idefics3ForConditionalGeneration(cfg).eval()
    random_init(model)
    model = model.half()
    # Longest edge 1024: a 2x2 grid of 512-px tiles + the global view, 5 x 64 = 320 visual tokens (the
    # real processor uses 2048 px: 4x4 tiles + global, 1088 tokens).
    ip = Idefics3ImageProcessorPil(do_resize=True, size={"longest_edge": edge}, max_image_size={"longest_edge": 512},
                                   do_image_splitting=True, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = Idefics3Processor(image_processor=ip, tokenizer=tok, image_seq_len=64)
    return model, proc, tok, None, ""


def _build_qwen2vl(work: Path):
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>"]
    tok = C.qwen2_bpe_tokenizer(work / "tok", specials)
    ids = {s: tok.convert_tokens_to_ids(s) for s in specials}
    text_cfg = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                    num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
                    rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
                    bos_token_id=None, eos_token_id=ids["<|im_end|>"], tie_word_embeddings=True)
    vision_cfg = dict(depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, hidden_act="quick_gelu")
    cfg = Qwen2VLConfig(text_config=text_cfg, vision_config=vision_cfg, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=True)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # ~4.4 GB instead of 8.9
    try:
        model = Qwen2VLForConditionalGeneration(cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    random_init(model)
    ip = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280, patch_size=14, temporal_patch_size=2,
                                  merge_size=2, image_mean=[0.48145466, 0.4578275, 0.40821073],
                                  image_std=[0.26862954, 0.26130258, 0.27577711])
    return model, None, tok, ip, "qwen2"


BIG_SPECS = {
    # name: (builder, family, template, image (w, h), HF class, image processor class)
    "smolvlm-256m": (_build_smolvlm, "idefics3", TEMPLATES["idefics3"], (512, 512),
                     "Idefics3ForConditionalGeneration",
                     "transformers.models.idefics3.image_processing_pil_idefics3.Idefics3ImageProcessorPil"),
    "qwen2vl-2b": (_build_qwen2vl, "qwen2vl", TEMPLATES["qwen2vl"], (224, 224), "Qwen2VLForConditionalGeneration",
                   "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl.Qwen2VLImageProcessorPil"),
}
BIG_NAMES = {"smolvlm-256m": "SmolVLM-256M shapes", "qwen2vl-2b": "Qwen2-VL-2B shapes"}


def _build_big(name: str) -> None:
    """Child process: build the HF checkpoint (f16) + f16 GGUFs + Q4_K_M text GGUF of `name`."""
    from tools.fixtures import mm

    build, _, _, (w, h), _, _ = BIG_SPECS[name]
    d = CACHE / f"rank-{name}"
    work = d / "work"
    print(f"building random-weight {BIG_NAMES[name]} (transformers, f16)...", file=sys.stderr)
    model, proc, tok, ip, pre = build(work)
    hf = d / "hf"
    mm.save_hf(model, proc, tok, hf)
    if ip is not None:
        ip.save_pretrained(str(hf))
    del model
    print(f"converting {name} with llama.cpp's convert_hf_to_gguf.py...", file=sys.stderr)
    C.run_converter(hf, d / "mmproj-f16.gguf", "f16", mmproj=True, pre=pre, name=f"rank-{name}")
    C.run_converter(hf, d / "model-f16.gguf", "f16", pre=pre, name=f"rank-{name}")
    quantize_with_llama_cpp(d / "model-f16.gguf", d / "model-Q4_K_M.gguf", "Q4_K_M")
    C.make_image(d / "image.png", w, h, seed=3)
    shutil.rmtree(work, ignore_errors=True)
    (d / "done").write_text("ok\n")


def big_model(name: str) -> Path:
    d = CACHE / f"rank-{name}"
    if not (d / "done").exists():
        d.mkdir(parents=True, exist_ok=True)
        # A child process, so that the f16 model's memory is returned before measuring.
        res = subprocess.run([sys.executable, "-m", "tools.bench.rank", "build", name], cwd=REPO)
        if res.returncode != 0 or not (d / "done").exists():
            sys.exit(f"building {name} failed")
    return d


# --- probes ------------------------------------------------------------------------------------


def _prepare(model: str, mmproj: str, template: str, image: str, n_probes: int) -> dict:
    """Child: the 64-token question, the token ids of prompt + answer, the query rows and, per probe,
    the target box and its relevance / visual-indicator vectors (corehead.ram.relevance_vectors)."""
    from PIL import Image

    from corehead import Engine, Probe
    from corehead.ram import relevance_vectors

    with Engine(model, mmproj=mmproj, n_threads=1, n_ctx=1024) as eng:
        base = len(eng.multimodal_tokens(template.format(q=""), [image]))
        words: list[str] = []
        i = 0
        while True:
            q = " ".join(words)
            n = len(eng.multimodal_tokens(template.format(q=q), [image])) - base
            if n >= N_QUESTION:
                break
            words.append(_WORDS[i % len(_WORDS)])
            i += 1
        # Trim characters until exactly N_QUESTION tokens (a word may add several).
        while n > N_QUESTION:
            q = q[:-1]
            n = len(eng.multimodal_tokens(template.format(q=q), [image])) - base
        prompt = template.format(q=q)
        n_prompt = len(eng.multimodal_tokens(prompt, [image]))
        ids, vis = eng.prepare(prompt + ANSWER, [image])
        w, h = Image.open(image).size
        rng = np.random.default_rng(0)
        probes = []
        for _ in range(n_probes + 1):  # the first one is the warm-up
            bw, bh = rng.uniform(0.2, 0.6) * w, rng.uniform(0.2, 0.6) * h
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            box = [float(x0), float(y0), float(x0 + bw), float(y0 + bh)]
            p = Probe(image=image, question=q, answer=ANSWER, bbox=box, prompt=prompt)
            r, v = relevance_vectors(eng, p, prompt, [image], len(ids), vis)
            probes.append({"bbox": box, "relevance": r.tolist(), "visual": v.tolist()})
    return {"question": q, "question_tokens": n, "prompt": prompt, "answer": ANSWER, "ids": ids.tolist(),
            "n_prompt": n_prompt, "n_tokens": len(ids), "n_visual": len(vis), "query_rows": list(range(n_prompt - 1,
                                                                                                         len(ids) - 1)),
            "probes": probes}


def _corehead_side(model: str, mmproj: str, image: str, prep: dict, threads: int, what: str) -> dict:
    """Child: per-probe seconds of rank_heads (what="rank") or of a plain prefill (what="prefill")."""
    from corehead import Engine, Probe, rank_heads

    probes = [Probe(image=image, question=prep["question"], answer=prep["answer"], bbox=p["bbox"],
                    prompt=prep["prompt"]) for p in prep["probes"]]
    full = prep["prompt"] + prep["answer"]
    with Engine(model, mmproj=mmproj, n_threads=threads, n_ctx=1024) as eng:
        eng.set_image_cache(0)  # every probe preprocesses and encodes its image, as transformers does

        def one(p):
            # Each probe stands for a new image: drop the engine's last preprocessed image too.
            eng.clear_image_cache()
            if what == "rank":
                r = rank_heads(eng, [p], query="answer", progress=False)
                return r.ram, r.visual_mass
            eng.logits(full, images=[image])
            return None

        one(probes[0])
        peak_load = peak_rss_mib()
        reset_peak_rss()
        secs, rams, vms = [], [], []
        for p in probes[1:]:
            t = time.perf_counter()
            out = one(p)
            secs.append(time.perf_counter() - t)
            if out is not None:
                rams.append(out[0].tolist())
                vms.append(out[1].tolist())
        info = eng.info
    return {"seconds": secs, "per_probe_s": statistics.median(secs), "peak_rss_mib": max(peak_load, peak_rss_mib()),
            "peak_rss_during_probes_mib": peak_rss_mib(), "peak_rss_load_and_warmup_mib": peak_load, "ram": rams,
            "visual_mass": vms, "file_type": info.get("file_type")}


def _import(path: str):
    import importlib

    mod, _, name = path.rpartition(".")
    return getattr(importlib.import_module(mod), name)


def _transformers_side(spec: dict, prep: dict, threads: int) -> dict:
    """Child: the same RAM with transformers eager attention + output_attentions, float32."""
    import torch

    torch.set_num_threads(threads)
    ids = torch.tensor([prep["ids"]])
    if spec["kind"] == "fixture":
        import tempfile

        from tools.refs.ablation import rebuild

        model, fx_inputs, _, _ = rebuild(spec["family"], Path(tempfile.mkdtemp(prefix="bench-rank-")))
        image_inputs = {k: v for k, v in fx_inputs.items() if k not in ("input_ids", "attention_mask")
                        and "token_type" not in k}
        ttype_keys = [k for k in fx_inputs if "token_type" in k]

        def image_tensors():
            return image_inputs
    else:
        import transformers
        from PIL import Image

        cls = getattr(transformers, spec["hf_class"])
        model = cls.from_pretrained(spec["hf"], dtype=torch.float32, attn_implementation="eager").eval()
        ip = _import(spec["image_processor"]).from_pretrained(spec["hf"])
        ttype_keys = ["mm_token_type_ids"] if spec["family"] == "qwen2vl" else []

        def image_tensors():
            img = Image.open(spec["image"]).convert("RGB")
            enc = ip(images=[[img]] if spec["family"] == "idefics3" else [img], return_tensors="pt")
            return {k: v for k, v in enc.items() if k in ("pixel_values", "pixel_attention_mask", "image_grid_thw")}

    cfg = model.config
    image_token = getattr(cfg, "image_token_id", None)
    if image_token is None:
        image_token = cfg.image_token_index
    rows = prep["query_rows"]
    base = model.model  # no LM head: only the attentions are needed

    def one(p):
        with torch.no_grad():
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), **image_tensors()}
            for k in ttype_keys:
                inputs[k] = (ids == image_token).long()
            out = base(**inputs, output_attentions=True, use_cache=False)
            a = torch.stack([x[0, :, rows, :] for x in out.attentions]).double().numpy()  # [L, H, |Q|, T]
        w = np.stack([np.asarray(p["relevance"]), np.asarray(p["visual"])], axis=-1)  # [T, 2]
        m = (a @ w).mean(2)  # [L, H, 2]
        return m[..., 0], m[..., 1]

    one(prep["probes"][0])
    peak_load = peak_rss_mib()
    reset_peak_rss()
    secs, rams, vms = [], [], []
    for p in prep["probes"][1:]:
        t = time.perf_counter()
        ram, vm = one(p)
        secs.append(time.perf_counter() - t)
        rams.append(ram.tolist())
        vms.append(vm.tolist())
    return {"seconds": secs, "per_probe_s": statistics.median(secs), "peak_rss_mib": max(peak_load, peak_rss_mib()),
            "peak_rss_during_probes_mib": peak_rss_mib(), "peak_rss_load_and_warmup_mib": peak_load, "ram": rams,
            "visual_mass": vms, "torch": torch.__version__, "transformers": __import__("transformers").__version__}


# --- driver ------------------------------------------------------------------------------------


def model_specs(names: list[str]) -> list[dict]:
    specs = []
    for name in names:
        if name in FIXTURES:
            d = REPO / "tests" / "data" / name
            meta = json.loads((d / "meta.json").read_text())
            template = meta["prompt"].replace("What is this?", "{q}")
            specs.append({"name": f"fixture {name}", "kind": "fixture", "family": name, "template": template,
                          "image": str(d / "image.png"), "hf": None,
                          "gguf": [("f32", str(d / "model-f32.gguf"), str(d / "mmproj-f32.gguf"))]})
        elif name in BIG_SPECS:
            d = big_model(name)
            _, family, template, _, hf_class, ip_class = BIG_SPECS[name]
            specs.append({"name": BIG_NAMES[name], "kind": "big", "family": family, "template": template,
                          "image": str(d / "image.png"), "hf": str(d / "hf"), "hf_class": hf_class,
                          "image_processor": ip_class,
                          "gguf": [("f16", str(d / "model-f16.gguf"), str(d / "mmproj-f16.gguf")),
                                   ("Q4_K_M", str(d / "model-Q4_K_M.gguf"), str(d / "mmproj-f16.gguf"))]})
        else:
            sys.exit(f"unknown model {name!r}: choose from {', '.join(FIXTURES + BIG)}")
    return specs


def _ratio(a, b):
    return a / b if a and b else None


def run(args) -> dict:
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    rows = []
    load = os.getloadavg()
    for spec in model_specs(names):
        n_probes = args.probes if spec["kind"] == "fixture" else args.big_probes
        _, model0, mmproj0 = spec["gguf"][0]
        prep = _in_child(_prepare, model0, mmproj0, spec["template"], spec["image"], n_probes)
        if "error" in prep:
            sys.exit(f"{spec['name']}: preparing the probes failed: {prep['error']}")
        print(f"{spec['name']}: {prep['n_tokens']} tokens ({prep['n_visual']} visual, question "
              f"{prep['question_tokens']}, |Q| = {len(prep['query_rows'])}), {n_probes} probes", file=sys.stderr)
        hf = None
        if not args.no_transformers:
            print("  transformers eager f32 ...", file=sys.stderr)
            hf = _in_child(_transformers_side, spec, prep, args.threads, timeout=args.timeout)
            print(f"  transformers: {hf.get('per_probe_s', hf.get('error'))}", file=sys.stderr)
        for weights, model, mmproj in spec["gguf"]:
            rk = _in_child(_corehead_side, model, mmproj, spec["image"], prep, args.threads, "rank")
            pf = _in_child(_corehead_side, model, mmproj, spec["image"], prep, args.threads, "prefill")
            for side, r in (("rank", rk), ("prefill", pf)):
                if "error" in r:
                    sys.exit(f"{spec['name']} {weights} {side}: {r['error']}")
            row = {"model": spec["name"], "weights": weights, "mmproj": Path(mmproj).name, "threads": args.threads,
                   "n_tokens": prep["n_tokens"], "n_visual": prep["n_visual"],
                   "question_tokens": prep["question_tokens"], "n_query": len(prep["query_rows"]),
                   "probes": n_probes, "rank": rk, "prefill": pf, "transformers": hf,
                   "rank_over_prefill": rk["per_probe_s"] / pf["per_probe_s"]}
            if hf and "error" not in hf:
                row["speedup_vs_transformers"] = _ratio(hf["per_probe_s"], rk["per_probe_s"])
                row["memory_ratio_vs_transformers"] = _ratio(hf["peak_rss_mib"], rk["peak_rss_mib"])
                row["probe_memory_ratio_vs_transformers"] = _ratio(hf["peak_rss_during_probes_mib"],
                                                                   rk["peak_rss_during_probes_mib"])
                row["max_abs_ram_diff"] = float(np.max(np.abs(np.asarray(hf["ram"]) - np.asarray(rk["ram"]))))
                row["max_abs_vm_diff"] = float(np.max(np.abs(np.asarray(hf["visual_mass"]) -
                                                             np.asarray(rk["visual_mass"]))))
            rows.append(row)
            print(f"  {weights}: rank {rk['per_probe_s']:.3f} s, prefill {pf['per_probe_s']:.3f} s "
                  f"({row['rank_over_prefill']:.2f}x)"
                  + (f", transformers {hf['per_probe_s']:.3f} s ({row['speedup_vs_transformers']:.1f}x), "
                     f"RSS {rk['peak_rss_mib']:.0f} vs {hf['peak_rss_mib']:.0f} MiB, "
                     f"max|ΔRAM| {row['max_abs_ram_diff']:.1e}" if "speedup_vs_transformers" in row else ""),
                  file=sys.stderr)
    return {"bench": "rank", "rows": rows, "query": "answer", "answer": ANSWER, "threads": args.threads,
            "load_average_start": load, "load_average_end": os.getloadavg(),
            "targets": {"rank_over_prefill_max": 1.2, "speedup_vs_transformers_min": 10,
                        "memory_ratio_vs_transformers_min": 5}}


def markdown(result: dict) -> str:
    lines = ["| model | corehead weights | tokens (visual) | rank_heads s/probe | prefill s/probe | rank / prefill "
             "| transformers s/probe | speedup | peak RSS MiB rank / prefill / transformers | memory ratio "
             "| during probes MiB rank / transformers | max abs ΔRAM |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rk, pf, hf = r["rank"], r["prefill"], r["transformers"]
        ok = hf and "error" not in hf
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['n_tokens']} ({r['n_visual']}) | {rk['per_probe_s']:.3f} | "
            f"{pf['per_probe_s']:.3f} | {r['rank_over_prefill']:.2f}x | "
            + (f"{hf['per_probe_s']:.3f} | {r['speedup_vs_transformers']:.1f}x | " if ok else "not run | - | ")
            + f"{rk['peak_rss_mib']:.0f} / {pf['peak_rss_mib']:.0f} / "
            + (f"{hf['peak_rss_mib']:.0f} | {r['memory_ratio_vs_transformers']:.1f}x | "
               f"{rk['peak_rss_during_probes_mib']:.0f} / {hf['peak_rss_during_probes_mib']:.0f} | "
               f"{r['max_abs_ram_diff']:.1e} |" if ok else "- | - | - | - |"))
    la = result["load_average_start"]
    lines += ["", f"Targets: rank / prefill <= 1.2x; speedup >= 10x; memory ratio >= 5x. Threads {result['threads']}, "
              f"query = answer ({len(result['answer'].split())} words, teacher-forced), 64-token question, one image; "
              f"load average at start {la[0]:.1f} on {os.cpu_count()} CPUs."]
    return "\n".join(lines)


def update_md(table: str, argv: list[str]) -> None:
    """Write (or replace) the `## rank` section of BENCHMARKS.md, as `python -m tools.bench text` does."""
    where = f"`python -m tools.bench rank {' '.join(argv)}`".replace(" `", "`") + \
        f" on {platform.machine()}, {os.cpu_count()} CPUs. See tools/bench/rank.py for what is measured.\n\n"
    update_benchmarks_md("rank", where, table)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m tools.bench rank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(FIXTURES + BIG), help="fixtures and/or smolvlm-256m,qwen2vl-2b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--probes", type=int, default=8, help="probes per fixture (plus one warm-up)")
    ap.add_argument("--big-probes", type=int, default=3, help="probes per random-weight model (plus one warm-up)")
    ap.add_argument("--no-transformers", action="store_true", help="skip the transformers side")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the transformers side of one model")
    ap.add_argument("--out", type=Path, default=REPO / "bench-out")
    ap.add_argument("--update-md", action="store_true", help="write the table into BENCHMARKS.md (## rank)")
    ap.add_argument("--long", metavar="LENGTHS", help="long contexts instead (e.g. 2048,8192,16384): one video probe "
                    "per length on smolvlm-256m,qwen2vl-2b (tools/bench/rank_long.py)")
    ap.add_argument("--hf-force", action="store_true", help="--long: attempt transformers even where its attention "
                    "maps exceed the machine's memory")
    args = ap.parse_args(argv)
    if args.long:
        from tools.bench import rank_long

        if args.models == ap.get_default("models"):
            args.models = ",".join(BIG)
        result = rank_long.run(args)
        table = rank_long.markdown(result)
        write_result("rank-long", result, table, args.out)
        if args.update_md:
            where = f"`python -m tools.bench rank {' '.join(a for a in argv if a != '--update-md')}` on " \
                f"{platform.machine()}, {os.cpu_count()} CPUs. See tools/bench/rank_long.py for what is measured.\n\n"
            update_benchmarks_md("rank --long", where, table)
        return
    result = run(args)
    table = markdown(result)
    write_result("rank", result, table, args.out)
    if args.update_md:
        update_md(table, [a for a in argv if a != "--update-md"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["build"]:  # python -m tools.bench.rank build NAME (child of big_model)
        _build_big(sys.argv[2])
    else:
        main(sys.argv[1:])
