"""`python -m tools.bench rank --long 2048,8192,16384`: rank_heads on long visual contexts (issue 20).

One probe per context length: a video of T frames (224-px frames for Qwen2-VL-2B shapes: 2 frames
per temporal patch, 64 tokens per pair; 512-px frames for SmolVLM-256M shapes: 64 tokens per frame
plus its frame text), a 64-token question and a teacher-forced answer, the target box the same
region of every frame; T is the largest count whose prompt stays within the length. Sides, each in
its own fresh process (own peak RSS), on the rank bench's random-weight models (tools/bench/rank.py;
corehead runs the Q4_K_M text GGUF + f16 mmproj, transformers the same weights' f16 checkpoint in
float32, as a user of either would):

- rank: `corehead.rank_heads(eng, [probe])`; prefill: `eng.logits(prompt + answer, videos=[clip])`
  (target rank / prefill <= 1.2x at every length);
- transformers: the base model's eager forward with `output_attentions=True` and the same RAM
  reduction as tools/bench/rank.py (target at >= 8k tokens: >= 10x less peak memory and >= 3x
  slower than rank_heads, or it cannot run at all). Its attention maps alone take
  n_layer x n_head x T^2 float32; a length where they exceed the machine's memory is not attempted
  (the row says how many GiB they need) unless --hf-force; an attempt runs under an address-space
  limit of the machine's memory minus 2 GiB, so that running out is its MemoryError, not the
  kernel's OOM killer choosing a process.

The frames cycle through 4 distinct pictures. At lengths compared with transformers (those it
attempts) corehead's image-embedding cache is off, so both encode every frame; above them the
cache is on for rank and prefill alike (the 4 pictures are encoded once per process), which keeps
a 16k-token run within minutes on 2 cores and makes rank / prefill compare the decoder-side cost
that the taps add. Per process: peak RSS = VmHWM (model load included); "probe" = the high-water
mark after a warm-up probe of 2 frames and a reset, i.e. the loaded model plus what the long probe adds.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import numpy as np

from tools.bench.common import peak_rss_mib, reset_peak_rss
from tools.bench.rank import ANSWER, BIG_NAMES, BIG_SPECS, _import, _in_child, big_model

FRAME_SIDE = {"smolvlm-256m": 512, "qwen2vl-2b": 224}
N_DISTINCT = 4
QUESTION = ("what color is the small object left of the large square near the top right corner of the picture and "
            "where is the blue circle below it in this video please answer with one word")
TEMPLATES = {
    "idefics3": "User:<__video__>{q}<end_of_utterance>\nAssistant:",
    "qwen2vl": "<|im_start|>user\n<__video__>{q}<|im_end|>\n<|im_start|>assistant\n",
}
BOX_FRACTION = (0.25, 0.25, 0.6, 0.55)  # the target region, as fractions of the frame


def frames(n: int, side: int) -> np.ndarray:
    """n frames cycling through N_DISTINCT deterministic noisy pictures."""
    rng = np.random.default_rng(0)
    pics = rng.integers(0, 256, size=(N_DISTINCT, side, side, 3), dtype=np.uint8)
    return pics[np.arange(n) % N_DISTINCT]


def attention_maps_gib(n_layer: int, n_head: int, n_tokens: int) -> float:
    return n_layer * n_head * n_tokens ** 2 * 4 / 2 ** 30


def _machine_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30


# --- children ----------------------------------------------------------------------------------


def _prepare(model: str, mmproj: str, family: str, side: int, lengths: list[int]) -> list[dict]:
    """Child: per length, the frame count, token ids, query rows and relevance vectors of the probe."""
    from corehead import Engine, Probe
    from corehead.ram import relevance_vectors

    prompt = TEMPLATES[family].format(q=QUESTION)
    out = []
    with Engine(model, mmproj=mmproj, n_threads=1, n_ctx=max(lengths) + 1024) as eng:
        def count(t: int) -> int:
            return len(eng.multimodal_tokens(prompt + ANSWER, videos=[frames(t, side)], max_frames=t))

        step = 2 if family == "qwen2vl" else 1  # Qwen: frames come in temporal pairs
        per = (count(4 * step) - count(2 * step)) / (2 * step)
        for length in lengths:
            t = max(step, int((length - count(step) + per * step) / per) // step * step)
            while count(t) > length:
                t -= step
            clip = frames(t, side)
            ids, vis = eng.prepare(prompt + ANSWER, videos=[clip], max_frames=t)
            n_prompt = len(eng.multimodal_tokens(prompt, videos=[clip], max_frames=t))
            x0, y0, x1, y1 = (f * side for f in BOX_FRACTION)
            p = Probe(video=clip, question=QUESTION, answer=ANSWER, bbox=[x0, y0, x1, y1], prompt=prompt, max_frames=t)
            # As score_probe calls it: the prompt with the video at the image marker, the native clip.
            r, v = relevance_vectors(eng, p, prompt.replace(eng.video_marker, eng.image_marker),
                                     eng.load_videos([clip], max_frames=t), len(ids), vis)
            out.append({"length": length, "frames": t, "ids": ids.tolist(), "n_tokens": len(ids),
                        "n_visual": len(vis), "query_rows": list(range(n_prompt - 1, len(ids) - 1)),
                        "bbox": [x0, y0, x1, y1], "relevance": r.tolist(), "visual": v.tolist()})
    return out


def _corehead(model: str, mmproj: str, family: str, side: int, prep: dict, threads: int, what: str,
              cache: bool) -> dict:
    """Child: seconds and memory of one long probe: rank_heads (what="rank") or a plain prefill."""
    from corehead import Engine, Probe, rank_heads

    prompt = TEMPLATES[family].format(q=QUESTION)

    def probe(t: int) -> Probe:
        return Probe(video=frames(t, side), question=QUESTION, answer=ANSWER, bbox=prep["bbox"], prompt=prompt,
                     max_frames=t)

    with Engine(model, mmproj=mmproj, n_threads=threads, n_ctx=prep["n_tokens"] + 64) as eng:
        if not cache:
            eng.set_image_cache(0)

        def one(p: Probe):
            if what == "rank":
                r = rank_heads(eng, [p], query="answer", progress=False)
                return r.ram
            eng.logits(prompt + ANSWER, videos=[p.video], max_frames=p.max_frames)
            return None

        one(probe(2))  # warm-up
        peak_load = peak_rss_mib()
        reset_peak_rss()
        t0 = time.perf_counter()
        ram = one(probe(prep["frames"]))
        secs = time.perf_counter() - t0
        kv = eng.kv_stats()
    return {"seconds": secs, "peak_rss_mib": max(peak_load, peak_rss_mib()), "peak_rss_probe_mib": peak_rss_mib(),
            "kv_bytes": kv["bytes"], "ram": None if ram is None else ram.tolist(), "cache": cache}


def _transformers(spec: dict, prep: dict, threads: int) -> dict:
    """Child: the same RAM from transformers eager + output_attentions (f32), the video as its processor
    lays it out: Qwen2-VL pixel_values_videos + video_grid_thw; SmolVLM frames as images."""
    limit = int((_machine_gib() - 2) * 2 ** 30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch
    import transformers

    torch.set_num_threads(threads)
    ids = torch.tensor([prep["ids"]])
    model = getattr(transformers, spec["hf_class"]).from_pretrained(spec["hf"], dtype=torch.float32,
                                                                    attn_implementation="eager").eval()
    clip = frames(prep["frames"], spec["side"])
    cfg = model.config
    if spec["family"] == "qwen2vl":
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

        ip = _import(spec["image_processor"]).from_pretrained(spec["hf"])
        vp = Qwen2VLVideoProcessor(size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}, patch_size=14,
                                   temporal_patch_size=2, merge_size=2, image_mean=ip.image_mean,
                                   image_std=ip.image_std, do_sample_frames=False)
        enc = vp(videos=[torch.from_numpy(clip)], return_tensors="pt")
        extra = {"pixel_values_videos": enc["pixel_values_videos"], "video_grid_thw": enc["video_grid_thw"],
                 "mm_token_type_ids": 2 * (ids == cfg.video_token_id).long()}
    else:
        from PIL import Image

        ip = _import(spec["image_processor"]).from_pretrained(spec["hf"])
        # SmolVLM's video frames: one 512-px view each (no tiles), normalized like the images.
        enc = ip(images=[[Image.fromarray(f) for f in clip]], do_image_splitting=False,
                 size={"longest_edge": spec["side"]}, return_tensors="pt")
        extra = {"pixel_values": enc["pixel_values"], "pixel_attention_mask": enc["pixel_attention_mask"]}
    rows = prep["query_rows"]
    w = np.stack([np.asarray(prep["relevance"]), np.asarray(prep["visual"])], axis=-1)
    peak_load = peak_rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            out = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra, output_attentions=True,
                              use_cache=False)
            a = torch.stack([x[0, :, rows, :] for x in out.attentions]).double().numpy()
    except (RuntimeError, MemoryError) as e:
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}", "after_s": time.perf_counter() - t0,
                "peak_rss_mib": max(peak_load, peak_rss_mib())}
    secs = time.perf_counter() - t0
    ram = (a @ w).mean(2)[..., 0]
    return {"seconds": secs, "peak_rss_mib": max(peak_load, peak_rss_mib()), "peak_rss_probe_mib": peak_rss_mib(),
            "ram": ram.tolist(), "torch": torch.__version__, "transformers": transformers.__version__}


# --- driver ------------------------------------------------------------------------------------


def run(args) -> dict:
    lengths = [int(x) for x in args.long.split(",")]
    rows = []
    from corehead import _core

    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        if name not in BIG_SPECS:
            sys.exit(f"rank --long runs on {', '.join(BIG_SPECS)}, not {name!r}")
        d = big_model(name)
        _, family, _, _, hf_class, ip_class = BIG_SPECS[name]
        side = FRAME_SIDE[name]
        model, mmproj = str(d / "model-Q4_K_M.gguf"), str(d / "mmproj-f16.gguf")
        info = _core.inspect_model(str(d / "model-f16.gguf")).to_dict()
        preps = _in_child(_prepare, model, mmproj, family, side, lengths)
        if isinstance(preps, dict):
            sys.exit(f"{name}: preparing the probes failed: {preps['error']}")
        spec = {"family": family, "hf": str(d / "hf"), "hf_class": hf_class, "image_processor": ip_class,
                "side": side}
        for prep in preps:
            need = attention_maps_gib(info["n_layer"], info["n_head"], prep["n_tokens"])
            attempt = need < _machine_gib() or args.hf_force
            label = f"{BIG_NAMES[name]} {prep['n_tokens']} tok ({prep['frames']} frames)"
            print(f"{label}: transformers {'attempted' if attempt else 'not attempted'} "
                  f"(attention maps {need:.1f} GiB)", file=sys.stderr, flush=True)
            hf = (_in_child(_transformers, spec, prep, args.threads, timeout=args.timeout) if attempt else
                  {"error": f"not attempted: output_attentions alone needs {need:.0f} GiB "
                            f"(n_layer x n_head x T^2 float32) on a {_machine_gib():.0f} GiB machine"})
            cache = not attempt  # encode every frame where transformers does
            rk = _in_child(_corehead, model, mmproj, family, side, prep, args.threads, "rank", cache)
            pf = _in_child(_corehead, model, mmproj, family, side, prep, args.threads, "prefill", cache)
            for side_name, r in (("rank", rk), ("prefill", pf)):
                if "error" in r:
                    sys.exit(f"{label} {side_name}: {r['error']}")
            row = {"model": BIG_NAMES[name], "length": prep["length"], "frames": prep["frames"],
                   "n_tokens": prep["n_tokens"], "n_visual": prep["n_visual"], "n_query": len(prep["query_rows"]),
                   "attention_maps_gib": need, "rank": rk, "prefill": pf, "transformers": hf,
                   "rank_over_prefill": rk["seconds"] / pf["seconds"], "threads": args.threads}
            if "error" not in hf:
                row["speedup_vs_transformers"] = hf["seconds"] / rk["seconds"]
                row["memory_ratio_vs_transformers"] = hf["peak_rss_mib"] / rk["peak_rss_mib"]
                row["max_abs_ram_diff"] = float(np.max(np.abs(np.asarray(hf["ram"]) - np.asarray(rk["ram"]))))
            print(f"  rank {rk['seconds']:.1f} s / prefill {pf['seconds']:.1f} s = {row['rank_over_prefill']:.2f}x, "
                  f"RSS {rk['peak_rss_mib']:.0f} MiB; transformers: "
                  + (f"{hf['seconds']:.1f} s, {hf['peak_rss_mib']:.0f} MiB" if "error" not in hf else hf["error"]),
                  file=sys.stderr, flush=True)
            rows.append(row)
    return {"bench": "rank-long", "rows": rows, "threads": args.threads, "machine_gib": _machine_gib(),
            "load_average_end": os.getloadavg(),
            "targets": {"rank_over_prefill_max": 1.2, "at_8k_memory_ratio_min": 10, "at_8k_speedup_min": 3}}


def markdown(result: dict) -> str:
    lines = ["| model | tokens (visual, frames) | rank_heads s | prefill s | rank / prefill | rank peak RSS MiB "
             "(probe) | KV MiB | transformers s | transformers peak RSS MiB | speed-up | memory ratio | max abs ΔRAM |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rk, pf, hf = r["rank"], r["prefill"], r["transformers"]
        cells = [r["model"], f"{r['n_tokens']} ({r['n_visual']}, {r['frames']})", f"{rk['seconds']:.1f}",
                 f"{pf['seconds']:.1f}", f"{r['rank_over_prefill']:.2f}x",
                 f"{rk['peak_rss_mib']:.0f} ({rk['peak_rss_probe_mib']:.0f})", f"{rk['kv_bytes'] / 2**20:.0f}"]
        if "error" in hf:
            cells += [f"cannot run: {hf['error']}", f"{hf['peak_rss_mib']:.0f}" if "peak_rss_mib" in hf else "-",
                      "-", "-", "-"]
        else:
            cells += [f"{hf['seconds']:.1f}", f"{hf['peak_rss_mib']:.0f}", f"{r['speedup_vs_transformers']:.1f}x",
                      f"{r['memory_ratio_vs_transformers']:.1f}x", f"{r['max_abs_ram_diff']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"One long probe per cell, {result['threads']} threads, query = the teacher-forced answer; "
              f"{result['machine_gib']:.0f} GiB machine, load average {result['load_average_end'][0]:.1f} at the end. "
              "Targets: rank / prefill <= 1.2x everywhere; at >= 8k tokens >= 10x less memory and >= 3x faster "
              "than transformers, or transformers cannot run. corehead's image-embedding cache is off where "
              "transformers runs (both encode every frame) and on elsewhere (4 distinct frames, encoded once)."]
    return "\n".join(lines)
