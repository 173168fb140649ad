"""`python -m tools.bench sparse`: CoRe-sparse vs dense decoding (docs/architecture.md §6), side by side.

Random-weight models with the text shapes of SmolVLM-256M (Q8_0), Qwen2-VL-2B and Qwen3-VL-2B (Q4_K_M),
quantized by llama.cpp's quantizer, with vision towers of the real shapes (f16); 1/4/16 images;
CoRe = 5% and 10% of the KV heads (a fixed random choice: with random weights no ranking means
anything); llama.cpp dense (llama-cpp-python's mtmd) on the same files and prompt. Every
configuration runs in its own process (peak RSS); llama.cpp's own llama-mtmd-cli (dense, built
from the pinned tree by tools/peers/native_peer.py) runs on the same files and images too. Reported per
cell: decode tok/s, time to first token, KV bytes held, peak RSS, and the bytes read per decoded
token (weights + KV at the middle of the generation) whose dense/sparse ratio bounds the decode speed-up.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench.common import CACHE, REPO, peak_rss_mib, quantize_with_llama_cpp
from tools.build.fetch_ggml import llama_cpp_tree

MODELS = ("smolvlm-256m", "qwen2vl-2b", "qwen3vl-2b", "internvl35-2b", "pixtral-12b", "gemma4-e2b", "qwen35-08b")
NAMES = {"smolvlm-256m": "SmolVLM-256M shapes Q8_0", "qwen2vl-2b": "Qwen2-VL-2B shapes Q4_K_M",
         "qwen3vl-2b": "Qwen3-VL-2B shapes Q4_K_M", "internvl35-2b": "InternVL3.5-2B shapes Q4_K_M",
         "pixtral-12b": "Pixtral-12B vision + SmolLM2-135M-shaped text Q4_K_M",
         "gemma4-e2b": "Gemma-4-E2B shapes (10 of 35 text layers) Q4_K_M", "qwen35-08b": "Qwen3.5-0.8B shapes Q4_K_M"}
# Image side fed to the model. SmolVLM: this mmproj resizes to 1024 px (2x2 tiles of 512 + the
# global view = 5 x 64 = 320 tokens per image; the real model uses 2048 px: 17 x 64 = 1088).
# Qwen2-VL: 224 px images (8 x 8 merged patches = 64 tokens per image); Qwen3-VL: 256 px (8 x 8 merged
# 32-px patches; at 224 px transformers' minimum of 65536 pixels would upscale and llama.cpp's would not).
# InternVL: 448 px = one tile, no thumbnail (256 tokens); Pixtral: 256 px = 16 x 16 patches + 16 row breaks.
# Gemma 4: 768 px = 48 x 48 patches of 16 px pooled 3x3 = 256 tokens (its processor's budget is 280);
# Qwen3.5: 256 px as Qwen3-VL (8 x 8 merged 32-px patches = 64 tokens).
IMAGE_SIDE = {"smolvlm-256m": 1024, "qwen2vl-2b": 224, "qwen3vl-2b": 256, "internvl35-2b": 448, "pixtral-12b": 256,
              "gemma4-e2b": 768, "qwen35-08b": 256}
QUESTION = "Describe what changes from one image to the next."


def _padded_vocab(src: Path, dst: Path, n_vocab: int, rename: dict[int, str] | None = None,
                  normal: dict[int, str] | None = None) -> Path:
    """A vocabulary-only GGUF: the tokenizer of `src` padded with unused tokens to n_vocab, some
    ids renamed to control tokens (`rename`: the image tokens the vision projector needs) or to
    normal tokens (`normal`)."""
    import gguf

    r = gguf.GGUFReader(str(src))
    tokens = [str(t) for t in r.fields["tokenizer.ggml.tokens"].contents()]
    types = [int(t) for t in r.fields["tokenizer.ggml.token_type"].contents()]
    scores = [float(x) for x in r.fields["tokenizer.ggml.scores"].contents()] if "tokenizer.ggml.scores" in r.fields \
        else None
    while len(tokens) < n_vocab:
        tokens.append(f"<unused{len(tokens)}>")
        types.append(5)
        if scores is not None:
            scores.append(-1e9)
    for i, text in (rename or {}).items():
        tokens[i], types[i] = text, 3
    for i, text in (normal or {}).items():
        tokens[i], types[i] = text, 1
    w = gguf.GGUFWriter(str(dst), "llama")
    for key, field in r.fields.items():
        if not key.startswith("tokenizer.") or key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                                        "tokenizer.ggml.scores"):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, field.contents(), field.types[0], sub_type=field.types[-1])
        else:
            w.add_key_value(key, field.contents(), field.types[0])
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return dst


# Models built by transformers + the converter (DeepStack, fused ViT q/k/v, KV sharing, DeltaNet):
# the builder of each in tools/bench/vision.py.
VISION_BUILDERS = {"qwen3vl-2b": "qwen3vl_shapes", "internvl35-2b": "internvl35_2b",
                   "pixtral-12b": "pixtral_12b_vision", "gemma4-e2b": "gemma4_e2b", "qwen35-08b": "qwen35_08b"}


def model_files(which: str, cache: Path = CACHE) -> tuple[Path, Path]:
    """(model, mmproj) for `which`, written once into `cache`."""
    from tools.fixtures.synthetic_gguf import write_mmproj, write_text_model

    cache.mkdir(parents=True, exist_ok=True)
    if which in VISION_BUILDERS:
        from tools.bench import vision

        return getattr(vision, VISION_BUILDERS[which])()
    quant = "Q8_0" if which == "smolvlm-256m" else "Q4_K_M"
    model = cache / f"{which}-shapes-{quant}.gguf"
    mmproj = cache / f"mmproj-{which}-shapes-f16.gguf"
    if not model.exists():
        f16 = cache / f"{which}-shapes-f16.gguf"
        print(f"writing random-weight {which} text shapes (f16)...", file=sys.stderr)
        if which == "smolvlm-256m":  # SmolLM2-135M layout with SmolVLM's vocabulary size
            # + a "\n\n" token: llama.cpp's idefics3 image layout looks it up (SmolVLM's vocabulary has it)
            vocab = _padded_vocab(REPO / "tests" / "data" / "idefics3" / "model-f32.gguf", cache / "vocab-smolvlm.gguf",
                                  49280, normal={1000: "\n\n"})
            write_text_model(f16, arch="llama", n_layer=30, n_embd=576, n_head=9, n_head_kv=3, n_ff=1536, n_ctx=8192,
                             dtype=np.float16, tied=True, std=0.02, vocab_file=vocab)
        else:  # Qwen2-VL-2B text model, Qwen2's vocabulary with its vision tokens
            vocab = _padded_vocab(llama_cpp_tree() / "models" / "ggml-vocab-qwen2.gguf", cache / "vocab-qwen2vl.gguf",
                                  151936, {151652: "<|vision_start|>", 151653: "<|vision_end|>",
                                           151655: "<|image_pad|>"})
            write_text_model(f16, arch="qwen2vl", n_layer=28, n_embd=1536, n_head=12, n_head_kv=2, n_ff=8960,
                             n_ctx=32768, dtype=np.float16, tied=True, std=0.02, vocab_file=vocab)
        quantize_with_llama_cpp(f16, model, quant)
        f16.unlink()
    if not mmproj.exists():
        print(f"writing random-weight {which} vision tower (f16)...", file=sys.stderr)
        if which == "smolvlm-256m":  # SigLIP-B/16 at 512 px, pixel shuffle 4 -> 64 tokens per view
            write_mmproj(mmproj, projector="idefics3", n_layer=12, n_embd=768, n_head=12, n_ff=3072, image_size=512,
                         patch=16, n_out=576, dtype=np.float16, scale_factor=4, preproc_image_size=1024)
        else:  # Qwen2-VL-2B ViT: 32 blocks of 1280, patch 14, 2x2 merger to 1536
            write_mmproj(mmproj, projector="qwen2vl_merger", n_layer=32, n_embd=1280, n_head=16, n_ff=5120,
                         image_size=560, patch=14, n_out=1536, dtype=np.float16)
    return model, mmproj


def images(n: int, side: int) -> list[np.ndarray]:
    """n copies of one deterministic noisy picture: the decoder sees n images' worth of visual
    tokens; corehead's vision encoder runs once per process (embedding cache), llama.cpp's once
    per image."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    return [img] * n


# --video (issue 20): frames as one video. Qwen2-VL-2B: 2 frames per temporal patch, (side / 28)^2 tokens per
# pair (896 px = 1024); SmolVLM2's video processor: one 512-px view per frame, no tiles (64 tokens + frame text).
VIDEO_SIDE = {"smolvlm-256m": 512, "qwen2vl-2b": 448}
VIDEO_QUESTION = "Describe what happens in this video."
VIDEO_FPS = 2.0


def video_frames(n: int, side: int) -> np.ndarray:
    """n distinct deterministic noisy frames (T, side, side, 3): every frame is encoded, as in a real video."""
    return np.random.default_rng(1).integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)


def _media(spec: dict, image_marker: str, video_marker: str) -> tuple[str, dict]:
    """(prompt, media keyword arguments) of one configuration: n_images copies of a picture, or a video
    of n_frames frames."""
    if spec.get("n_frames"):
        return video_marker + VIDEO_QUESTION, {"videos": [video_frames(spec["n_frames"], spec["side"])],
                                               "fps": VIDEO_FPS, "max_frames": spec["n_frames"]}
    return image_marker * spec["n_images"] + QUESTION, {"images": images(spec["n_images"], spec["side"])}


def core_kv_choice(kv_layers: list[int], n_head_kv: int, fraction: float, seed: int = 0) -> list[tuple[int, int]]:
    """A fixed random `fraction` (at least one) of the KV heads of the layers that hold a KV cache."""
    rng = np.random.default_rng(seed)
    n = len(kv_layers) * n_head_kv
    k = max(1, round(fraction * n))
    pick = sorted(rng.choice(n, size=k, replace=False).tolist())
    return [(kv_layers[i // n_head_kv], i % n_head_kv) for i in pick]


class KVReads:
    """The KV bytes one decoded token reads, per the model's layer layout: every attention layer reads
    the K/V of the layer that holds them (itself, or under KV sharing, Gemma 4, an earlier one), f16,
    K + V of its head size, over all keys before it, or over the last `window` keys in a sliding-window
    layer (ggml's CPU flash attention skips masked keys); recurrent layers (Gated DeltaNet, Qwen3.5)
    read and write their state once per token, dense or sparse alike (counted twice: read + write)."""

    def __init__(self, model: Path) -> None:
        import gguf

        from corehead import _core
        from corehead.sparse import kv_layers, kv_source_layers, layer_head_dims

        info = _core.inspect_model(str(model)).to_dict()
        self.n_head_kv = int(info["n_head_kv"])
        self.kv_layers = kv_layers(info)
        self.source = kv_source_layers(info)
        self.head_dims = layer_head_dims(info)
        self.attention = [int(x) for x in info.get("attention_layers") or range(info["n_layer"])]
        self.state_bytes = 2 * int(info.get("recurrent_state_bytes") or 0)
        fields = gguf.GGUFReader(str(model)).fields

        def get(key: str):
            f = fields.get(f"{info['arch']}.{key}")
            return None if f is None else f.contents()

        window = int(get("attention.sliding_window") or 0)
        pattern = get("attention.sliding_window_pattern") if window else [False] * info["n_layer"]
        if not isinstance(pattern, list):  # the benched models: none, or Gemma 4's one flag per layer
            raise SystemExit(f"{model.name}: no per-layer sliding_window_pattern; this bound knows Gemma 4's only")
        self.window = [window if swa else 0 for swa in pattern]

    def head_bytes(self, layer: int) -> int:
        """Bytes one token occupies in one KV head of `layer` (K + V, f16)."""
        return self.head_dims[layer] * 2 * 2

    def per_token_held(self, heads: list[tuple[int, int]] | None = None) -> int:
        """Cache bytes per token held by `heads` ((KV layer, KV head) pairs; None = every KV head)."""
        if heads is None:
            return sum(self.head_bytes(layer) * self.n_head_kv for layer in self.kv_layers)
        return sum(self.head_bytes(layer) for layer, _ in heads)

    def read(self, pos: int, visual: np.ndarray, core: list[tuple[int, int]] | None = None) -> int:
        """KV + state bytes read to decode the token at `pos`: dense (core None), or CoRe-sparse, where a
        non-CoRe KV head keeps no visual keys (visual_budget 0) and a CoRe one keeps them all."""
        core_set = set(core or [])
        total = self.state_bytes
        for layer in self.attention:
            src, w = self.source[layer], self.window[layer]
            lo = max(0, pos - w) if w else 0
            n_keys = pos - lo
            n_vis = int(np.count_nonzero((visual >= lo) & (visual < pos)))
            for h in range(self.n_head_kv):
                keep = n_keys if core is None or (src, h) in core_set else n_keys - n_vis
                total += keep * self.head_bytes(src)
        return total


def _peak_rss() -> int:
    return int(peak_rss_mib() * 1024 * 1024)


def worker(spec: dict) -> dict:
    """One configuration in this process: corehead dense / sparse, or llama.cpp dense."""
    if spec["mode"] == "llama.cpp":
        return _llama_cpp(spec)
    from corehead import Engine, _core

    info = _core.inspect_model(spec["model"])
    g = info["n_head"] // info["n_head_kv"]
    kv = spec.get("core_kv")
    eng = Engine(spec["model"], mmproj=spec["mmproj"], n_threads=spec["threads"], n_ctx=spec["n_ctx"],
                 core_heads=None if kv is None else [(layer, h * g) for layer, h in kv])  # head h*g: KV head h
    prompt, media = _media(spec, eng.image_marker, eng.video_marker)
    n_prompt = len(eng.multimodal_tokens(prompt, **media))
    visual = [int(x) for x in eng.visual_token_positions(prompt, **media)]
    n_visual = len(visual)
    if spec.get("count_only"):
        return {"n_prompt": n_prompt, "n_visual": n_visual, "visual_positions": visual}
    stamps: list[float] = []

    def on_token(_t: int) -> bool:
        stamps.append(time.perf_counter())
        return True

    t0 = time.perf_counter()
    ids = eng.generate_ids(prompt, max_tokens=spec["n_gen"], stop_at_eog=False, on_token=on_token, **media)
    st = eng.kv_stats()
    t1 = time.perf_counter()
    eng.generate_ids(prompt, max_tokens=1, stop_at_eog=False, **media)  # image embeddings cached now
    warm = time.perf_counter() - t1
    eng.close()
    return {"ttft_s": stamps[0] - t0, "ttft_warm_s": warm, "decode_tok_s": (len(ids) - 1) / (stamps[-1] - stamps[0]),
            "n_generated": len(ids), "n_prompt": n_prompt, "n_visual": n_visual, "kv_bytes": st["bytes"],
            "kv_allocated": st["allocated_bytes"], "kv_groups": st["groups"], "first_tokens": ids[:8],
            "peak_rss": _peak_rss()}


def _llama_cpp(spec: dict) -> dict:
    import llama_cpp
    from llama_cpp import mtmd_cpp

    threads, n_gen = spec["threads"], spec["n_gen"]
    n_batch = min(512, spec["n_ctx"])  # llama.cpp caps its batch at n_ctx; mtmd must not ask for more
    from tools.peers.llama_cpp_peer import load_llama  # extra CPU buffer types off (AMX hosts)

    llm = load_llama(spec["model"], n_ctx=spec["n_ctx"], n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                     n_threads_batch=threads, flash_attn=True, verbose=False)
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu = False
    params.print_timings = False
    params.n_threads = threads
    mctx = mtmd_cpp.mtmd_init_from_file(spec["mmproj"].encode(), llm.model, params)
    if not mctx:
        raise RuntimeError("llama.cpp could not load the mmproj")
    marker = mtmd_cpp.mtmd_default_marker().decode()
    _, media = _media(spec, marker, marker)
    video = "videos" in media
    imgs = list(media["videos"][0]) if video else media["images"]
    # A video = one marker and one mergeable bitmap per frame, as mtmd-helper's video reader emits them
    # (mtmd_tokenize fuses consecutive mergeable frames into Qwen-VL's temporal patches).
    text = (marker * len(imgs) + (VIDEO_QUESTION if video else QUESTION)).encode()
    bitmaps = []
    for img in imgs:
        buf = (ctypes.c_uint8 * img.size).from_buffer_copy(np.ascontiguousarray(img).tobytes())
        bitmaps.append(mtmd_cpp.mtmd_bitmap_init(img.shape[1], img.shape[0], buf))
        if video:
            mtmd_cpp.mtmd_bitmap_set_mergeable(bitmaps[-1], True)
    inp = mtmd_cpp.mtmd_input_text()
    inp.text, inp.text_len, inp.add_special, inp.parse_special = text, len(text), True, True
    chunks = mtmd_cpp.mtmd_input_chunks_init()
    arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * len(bitmaps))(*bitmaps)
    if mtmd_cpp.mtmd_tokenize(mctx, chunks, ctypes.byref(inp), arr, len(bitmaps)) != 0:
        raise RuntimeError("mtmd_tokenize failed")
    n_prompt = mtmd_cpp.mtmd_helper_get_n_tokens(chunks)
    ctx, n_vocab = llm._ctx.ctx, llm.n_vocab()
    n_past = llama_cpp.llama_pos(0)
    t0 = time.perf_counter()
    if mtmd_cpp.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, n_batch, True, ctypes.byref(n_past)) != 0:
        raise RuntimeError("mtmd_helper_eval_chunks failed")
    ids = [int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))))]
    t_first = time.perf_counter()
    tok = (llama_cpp.llama_token * 1)()
    for _ in range(n_gen - 1):
        tok[0] = ids[-1]
        if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tok, 1)) != 0:
            raise RuntimeError("llama_decode failed")
        ids.append(int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,)))))
    t_end = time.perf_counter()
    mtmd_cpp.mtmd_input_chunks_free(chunks)
    for b in bitmaps:
        mtmd_cpp.mtmd_bitmap_free(b)
    mtmd_cpp.mtmd_free(mctx)
    llm.close()
    return {"ttft_s": t_first - t0, "decode_tok_s": (n_gen - 1) / (t_end - t_first), "n_generated": len(ids),
            "n_prompt": int(n_prompt), "first_tokens": ids[:8], "peak_rss": _peak_rss()}


def _run(spec: dict) -> dict:
    """worker(spec) in a fresh process (python -m tools.bench sparse-worker JSON)."""
    out = subprocess.run([sys.executable, "-m", "tools.bench", "sparse-worker", json.dumps(spec)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def native_mtmd(spec: dict) -> dict:
    """llama.cpp's own llama-mtmd-cli (tools/peers/native_peer.py, timed as native_peer.mtmd_cli says)
    dense on the same files, images and question."""
    from tools.peers import native_peer
    from tools.peers.llama_cpp_peer import PeerCrashed

    try:
        if spec.get("n_frames"):
            return _native_video(spec)
        r = native_peer.mtmd_cli_on_arrays(Path(spec["model"]), Path(spec["mmproj"]),
                                           images(spec["n_images"], spec["side"]),
                                           "<__media__>" * spec["n_images"] + QUESTION, spec["threads"],
                                           spec["n_gen"], spec["n_ctx"])
    except PeerCrashed as e:
        return {"error": str(e)}
    return {"decode_tok_s": r["decode_tok_s"], "ttft_s": r["ttft_s"], "encode_s": sum(r["encode_ms"]) / 1000,
            "timing": r["timing"]}


def write_video(frames: np.ndarray, path: Path, fps: float = VIDEO_FPS) -> Path:
    """frames as a lossless FFV1 video (Matroska) at `fps`: llama-mtmd-cli's video path decodes it with
    ffmpeg, and sampled at the same fps it sees exactly these frames."""
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("ffv1", rate=int(fps))
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "bgr0"
        for f in frames:
            out.mux(st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(st.encode())
    return path


def _native_video(spec: dict) -> dict:
    """llama-mtmd-cli on the clip as a video file (its ffmpeg video path: --video, --video-fps, no
    timestamp text)."""
    import shutil
    import tempfile

    from tools.peers import native_peer

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        return {"error": "llama-mtmd-cli's video path needs ffmpeg and ffprobe on PATH (apt-get install ffmpeg)"}
    with tempfile.TemporaryDirectory() as tmp:
        clip = write_video(video_frames(spec["n_frames"], spec["side"]), Path(tmp) / "clip.mkv")
        r = native_peer.mtmd_cli(Path(spec["model"]), Path(spec["mmproj"]), [clip], "<__media__>" + VIDEO_QUESTION,
                                 spec["threads"], spec["n_gen"], n_ctx=spec["n_ctx"],
                                 extra=["--chat-template", "chatml", "--video-fps", str(VIDEO_FPS),
                                        "--video-timestamp-interval", "0"])
    return {"decode_tok_s": r["decode_tok_s"], "ttft_s": r["ttft_s"], "encode_s": sum(r["encode_ms"]) / 1000,
            "timing": r["timing"]}


def weight_bytes_per_token(model: Path) -> int:
    """Weight bytes read per decoded token: every matrix once; the token embedding only when the
    output projection reuses it (else get_rows reads one row), and Gemma 4's per-layer embedding
    table never (get_rows: one row per token)."""
    import gguf

    sizes = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(model)).tensors}
    total = sum(v for k, v in sizes.items() if k not in ("token_embd.weight", "per_layer_token_embd.weight"))
    return total + (sizes["token_embd.weight"] if "output.weight" not in sizes else 0)


def configs(args, files=model_files) -> list[tuple[str, Path, dict]]:
    """(model name, model file, base spec) per cell (`files(name)` -> (model, mmproj)): image counts
    (--images), or with --video frame counts (--frames) of one video at VIDEO_SIDE (--side overrides the
    side); arguments checked first."""
    video = bool(getattr(args, "video", False))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    allowed = ("smolvlm-256m", "qwen2vl-2b") if video else MODELS
    bad = [m for m in models if m not in allowed]
    if bad or not models:
        raise SystemExit(f"sparse{' --video' if video else ''}: --models takes {', '.join(allowed)}; got {bad or '[]'}")
    try:
        counts = [int(x) for x in (args.frames if video else args.images).split(",")]
        [float(x) for x in args.core.split(",")]
    except ValueError as e:
        raise SystemExit(f"sparse: --{'frames' if video else 'images'} and --core take comma-separated numbers "
                         f"({e})") from None
    if any(n < 1 for n in counts):
        raise SystemExit(f"sparse: counts must be >= 1, got {counts}")
    side = getattr(args, "side", None)
    if side is not None and side < 28:
        raise SystemExit("sparse: --side takes at least 28 px")
    out = []
    for which in models:
        if video and which == "qwen2vl-2b" and any(n % 2 for n in counts):
            raise SystemExit("sparse --video: Qwen2-VL takes frames in temporal pairs; use even --frames")
        model, mmproj = files(which)
        s = side or (VIDEO_SIDE if video else IMAGE_SIDE)[which]
        for n in counts:
            out.append((which, model, {"model": str(model), "mmproj": str(mmproj), "n_images": 0 if video else n,
                                       "n_frames": n if video else 0, "side": s, "n_gen": args.gen,
                                       "threads": args.threads}))
    return out


def targets(rows: list[dict]) -> list[dict]:
    """Issue 20's targets per video row: decode >= 80% of the bytes bound (of_bound), TTFT sparse <= 0.67x
    dense at >= 16 frames (cold and warm), visual KV <= 15% of dense."""
    out = []
    for r in rows:
        d = r["dense"]
        for frac, s in r["sparse"].items():
            if "error" in s or "error" in d:
                continue
            cell = f"{r['model']}, {r['n_images']} frames, sparse {frac}"
            ob = s.get("of_bound")
            out.append({"cell": cell, "target": "decode >= 80% of bound", "value": "n/a" if ob is None else f"{ob:.0%}",
                        "pass": ob is not None and ob >= 0.8})
            if r["n_images"] >= 16:
                for key, what in (("ttft_s", "cold"), ("ttft_warm_s", "warm")):
                    ratio = s[key] / d[key]
                    out.append({"cell": cell, "target": f"TTFT ({what}) sparse <= 0.67x dense",
                                "value": f"{ratio:.2f}x ({s[key]:.1f} / {d[key]:.1f} s)", "pass": ratio <= 0.67})
            out.append({"cell": cell, "target": "visual KV <= 15% of dense", "value": f"{s['visual_kv_ratio']:.1%}",
                        "pass": s["visual_kv_ratio"] <= 0.15})
    return out


def run(args) -> dict:
    rows = []
    for which, model, spec in configs(args):
        weights = weight_bytes_per_token(model)
        layout = KVReads(model)
        per_tok = layout.per_token_held()
        n_img = spec["n_frames"] or spec["n_images"]
        base = dict(spec, n_ctx=65536 if which != "qwen2vl-2b" else 32768)
        counted = _run(dict(base, mode="dense", count_only=True))
        if "error" in counted:
            raise RuntimeError(f"{which}: {counted['error']}")
        n_prompt, n_vis = counted["n_prompt"], counted["n_visual"]
        visual = np.asarray(counted["visual_positions"])
        base["n_ctx"] = n_prompt + args.gen + 16
        mid = n_prompt + args.gen // 2
        dense_read = weights + layout.read(mid, visual)
        dense = _run(dict(base, mode="dense"))
        print(f"{which} x{n_img} dense: {dense}", file=sys.stderr, flush=True)
        row = {"model": NAMES[which], "file": str(model), "n_images": n_img, "video": bool(spec["n_frames"]),
               "side": spec["side"], "n_prompt": n_prompt,
               "n_visual": n_vis, "n_ctx": base["n_ctx"], "weights_read": weights, "dense": dense,
               "dense_bytes_per_token": dense_read, "dense_visual_kv": n_vis * per_tok,
               "state_bytes_per_token": layout.state_bytes, "kv_layers": layout.kv_layers,
               "sliding_window": max(layout.window), "sparse": {}}
        for frac in [float(x) for x in args.core.split(",")]:
            kv = core_kv_choice(layout.kv_layers, layout.n_head_kv, frac)
            sp = _run(dict(base, mode="sparse", core_kv=kv))
            print(f"{which} x{n_img} sparse {frac:.0%}: {sp}", file=sys.stderr, flush=True)
            core_tok = layout.per_token_held(kv)
            sparse_read = weights + layout.read(mid, visual, kv)
            sp.update(core_kv_heads=len(kv), bytes_per_token=sparse_read, bound=dense_read / sparse_read,
                      visual_kv=n_vis * core_tok, visual_kv_ratio=core_tok / per_tok)
            if "decode_tok_s" in sp and "decode_tok_s" in dense:
                sp["speedup"] = sp["decode_tok_s"] / dense["decode_tok_s"]
                sp["of_bound"] = (sp["speedup"] - 1) / (sp["bound"] - 1) if sp["bound"] > 1 else None
            row["sparse"][f"{frac:.0%}"] = sp
        if args.no_llama_cpp:
            row["llama_cpp"] = {"error": "skipped (--no-llama-cpp)"}
        else:
            # llama.cpp tiles each SmolVLM frame as an image (5 views at this mmproj's 1024 px, not
            # SmolVLM2's one 512-px view): its prompt is longer than corehead's, so its context is the model's.
            if spec["n_frames"] and which == "smolvlm-256m":
                base = dict(base, n_ctx=8192)
            row["llama_cpp"] = _run(dict(base, mode="llama.cpp"))
            row["llama_cpp"]["kv_allocated"] = base["n_ctx"] * per_tok  # llama.cpp: n_ctx x every head
        print(f"{which} x{n_img} llama.cpp: {row['llama_cpp']}", file=sys.stderr, flush=True)
        row["llama_mtmd_cli"] = native_mtmd(base) if not args.no_llama_cpp else {"error": "skipped"}
        print(f"{which} x{n_img} llama-mtmd-cli: {row['llama_mtmd_cli']}", file=sys.stderr, flush=True)
        rows.append(row)
    return {"bench": "sparse", "rows": rows, "video": bool(getattr(args, "video", False)), "note": note(args),
            "targets": targets(rows) if getattr(args, "video", False) else []}


def note(args) -> str:
    if getattr(args, "video", False):
        return (f"{args.threads} threads, {args.gen} generated tokens (greedy, no EOS stop), CoRe = a fixed random "
                f"{args.core} of the KV heads, visual_budget 0, sink 4, f16 KV cache, n_ctx = prompt + gen + 16. "
                "Random weights with the real shapes. The video: distinct noisy frames (every one is encoded) given "
                f"to corehead as a (T, H, W, 3) array at {VIDEO_FPS:g} fps; Qwen2-VL-2B: 2 frames per temporal patch; "
                "SmolVLM-256M: SmolVLM2's video layout, one 512-px view (64 tokens) per frame plus its frame text. "
                "TTFT cold = vision encode of every frame + prefill; warm = the same prompt again with the frame "
                "embeddings cached (prefill only), so cold - warm = encode. llama-cpp-python: one mergeable bitmap "
                "per frame (mtmd's video tokenization); llama-mtmd-cli: the frames as a lossless FFV1 file through "
                "its ffmpeg video path (--video-fps 2, no timestamps). Bytes/token and bound as in the image table. "
                f"One run per cell, shared 2-core machine (load average {os.getloadavg()[0]:.1f} at the end).")
    return (f"{args.threads} threads, {args.gen} generated tokens (greedy, no EOS stop), CoRe = a fixed random "
            f"{args.core} of the KV heads, visual_budget 0, sink 4, f16 KV cache everywhere (n_ctx = prompt + gen "
            "+ 16). Random weights with the real text shapes. SmolVLM-256M images at 1024 px (5 views = 320 "
            "tokens/image; the real model: 2048 px, 1088 tokens); Qwen2-VL-2B images at 224 px (64 tokens/image). "
            "Every image is the same picture: corehead encodes it once per process (embedding cache), llama.cpp "
            "once per image, so TTFT includes one vision pass for corehead and n for llama.cpp; 'warm' = corehead "
            "again with the embeddings cached (decoder prefill only). Bytes/token = weights read + KV read at the "
            "middle of the generation; bound = dense / sparse bytes per token; 'of bound' = (speed-up - 1) / "
            "(bound - 1). KV = bytes held after the generation (llama.cpp: allocated, n_ctx x all heads). One run "
            f"per cell on a shared 2-core machine (load average {os.getloadavg()[0]:.1f} at the end): noisy.")


def markdown(result: dict) -> str:
    def mib(x):
        return f"{x / 2**20:.1f}"

    what = "frames (side)" if result.get("video") else "images"
    lines = [f"| model | {what} | prompt tok | mode | decode tok/s | speed-up | bound (of bound) | TTFT s (warm) "
             "| KV MiB | visual KV vs dense | peak RSS MiB | bytes/token MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        d = r["dense"]
        count = f"{r['n_images']} ({r['side']} px)" if r.get("video") else r["n_images"]
        if "error" in d:
            lines.append(f"| {r['model']} | {count} | {r['n_prompt']} | dense | error: {d['error']} "
                         "| | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {count} | {r['n_prompt']} | dense | {d['decode_tok_s']:.1f} | 1.00x "
                     f"| 1.00x | {d['ttft_s']:.1f} ({d['ttft_warm_s']:.1f}) | {mib(d['kv_bytes'])} | 100% | "
                     f"{mib(d['peak_rss'])} | {mib(r['dense_bytes_per_token'])} |")
        for frac, s in r["sparse"].items():
            if "error" in s:
                lines.append(f"| | | | sparse {frac} | error: {s['error']} | | | | | | | |")
                continue
            ob = f" ({s['of_bound']:.0%})" if s.get("of_bound") is not None else ""
            lines.append(f"| | | | sparse {frac} ({s['core_kv_heads']} KV heads) | {s['decode_tok_s']:.1f} | "
                         f"{s['speedup']:.2f}x | {s['bound']:.2f}x{ob} | {s['ttft_s']:.1f} ({s['ttft_warm_s']:.1f}) | "
                         f"{mib(s['kv_bytes'])} | {s['visual_kv_ratio']:.1%} | {mib(s['peak_rss'])} | "
                         f"{mib(s['bytes_per_token'])} |")
        nat = r.get("llama_mtmd_cli", {"error": "not run"})
        if "error" in nat:
            lines.append(f"| | | | llama-mtmd-cli dense | not run: {nat['error']} | | | | | | | |")
        else:
            lines.append(f"| | | | llama-mtmd-cli dense | {nat['decode_tok_s']:.1f} | "
                         f"{nat['decode_tok_s'] / d['decode_tok_s']:.2f}x | | {nat['ttft_s']:.1f} | | 100% | | |")
        ll = r["llama_cpp"]
        if "error" in ll:
            lines.append(f"| | | | llama-cpp-python dense | not run: {ll['error']} | | | | | | | |")
        else:
            lines.append(f"| | | {ll['n_prompt']} | llama-cpp-python dense | {ll['decode_tok_s']:.1f} | "
                         f"{ll['decode_tok_s'] / d['decode_tok_s']:.2f}x | | {ll['ttft_s']:.1f} | "
                         f"{mib(ll['kv_allocated'])} | 100% | {mib(ll['peak_rss'])} | |")
    if result.get("targets"):
        lines += ["", "| cell | target | value | |", "|---|---|---|---|"]
        lines += [f"| {t['cell']} | {t['target']} | {t['value']} | {'pass' if t['pass'] else 'miss'} |"
                  for t in result["targets"]]
    return "\n".join(lines) + "\n\n" + result["note"]
