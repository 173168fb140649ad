#!/usr/bin/env python3
"""Transformers references for video input: tests/data/<family>/video_ref.npz.

For Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL 3 / 3.5 and SmolVLM the fixture's HF model is
rebuilt from its recipe (tools.refs.ablation.rebuild, checked against the committed ref.npz first;
SmolVLM: the idefics3 fixture's weights in SmolVLMForConditionalGeneration, checked to give the
committed image logits) and a short synthetic
clip goes through transformers' own processor (Qwen2VLProcessor / Qwen2_5_VLProcessor /
Qwen3VLProcessor with their video processors: temporal patches of 2 frames, odd counts padded
with the last frame, Qwen3-VL's "<t seconds>" text per patch; InternVLProcessor: one tile per
frame, "FrameN: <img>...</img>"; SmolVLMProcessor: the intro, "Frame from MM:SS:" per frame, which
needs num2words, installed beside torchvision), get_rope_index (Qwen) (M-RoPE positions,
Qwen2.5-VL's second_per_grid_ts) and the eager f32 forward pass.

Frames are passed as already sampled (do_sample_frames=False) with VideoMetadata(fps,
frames_indices = 0..T-1), which is how corehead takes a (T, H, W, 3) array at `fps`. Their size is
a multiple of patch * merge inside the pixel bounds, so no resize happens (transformers resizes
videos with torchvision, corehead with Pillow's filters as for images). Pixel bounds are the ones
corehead uses when the mmproj does not store any: Qwen2/2.5-VL the image processor's
(56*56, 28*28*1280), Qwen3-VL the released video_preprocessor_config (4096, 25165824).

Keys per case c in (a, b): c_frames uint8 [T, H, W, 3], c_fps, c_ids int32 [n] (processor input_ids),
c_positions int32 [3, n] (get_rope_index), c_video_grid_thw; case a also a_logits_last f32
[n_vocab] and a_attn_last f32 [n_layer, n_head, n] (the last query's attention rows).
Case a: 4 frames at 2 fps; case b: 5 frames (padded to 6) at 3 fps (Qwen2.5-VL: 1.333 M-RoPE
steps per temporal patch, truncated as torch does).

The PyPI torchvision wheel is a CUDA build whose compiled ops do not load beside the CPU torch of
the fixture toolchain (installed there, it breaks every transformers import); the video
processors only need its functional transforms, so it is installed into a folder of its own and
its _meta_registrations module (which registers fakes for those ops) is stubbed before the import.
The rebuilt model is checked against ref.npz to 1e-4 (logits up to ~17; the rebuild reproduces
them to ~2e-5 on this toolchain).

    pip install --no-deps --target /tmp/tv torchvision==0.28.0 && pip install --target /tmp/tv num2words
    TORCHVISION_DIR=/tmp/tv nice -n 10 python -m tools.refs.video [qwen2vl qwen25vl qwen3vl]
"""

from __future__ import annotations

import argparse
import os
import sys
import types
from pathlib import Path

# torchvision kept outside the shared toolchain (its import breaks transformers there, see above):
# pip install --no-deps --target DIR torchvision==0.28.0, then TORCHVISION_DIR=DIR.
if os.environ.get("TORCHVISION_DIR"):
    sys.path.insert(0, os.environ["TORCHVISION_DIR"])

import numpy as np  # noqa: E402

from tools.fixtures import check_families  # noqa: E402
from tools.fixtures import common as C  # noqa: E402
from tools.refs.ablation import in_work_dir, maxdiff, rebuild, run, save_refs  # noqa: E402

FAMILIES = ("qwen2vl", "qwen25vl", "qwen3vl", "internvl3", "internvl35", "idefics3")
PROMPT_HF = ("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens?<|im_end|>\n"
             "<|im_start|>assistant\n")
# Qwen3-VL: the bare video token. transformers 5.23's Qwen3VLProcessor replaces only <|video_pad|> with its
# per-patch "<t seconds><|vision_start|>...<|vision_end|>" blocks, so the chat template's
# <|vision_start|><|video_pad|><|vision_end|> would nest them in another start / end pair; 4.57's processor and
# qwen-vl-utils replace the whole triple, which is what corehead lays out and what 5.23 gives for the bare token.
PROMPT_HF_QWEN3 = "<|im_start|>user\n<|video_pad|>What happens?<|im_end|>\n<|im_start|>assistant\n"
# InternVL: the processor's video token, replaced by "Frame1: <img>...</img>\nFrame2: ..." (one
# tile per frame, no tiling).
PROMPT_HF_INTERNVL = "<|im_start|>user\n<video>What happens?<|im_end|>\n<|im_start|>assistant\n"
REBUILD_TOL = 1e-4
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _torchvision_functional_only() -> None:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))


def frames(seed: int, t: int, h: int, w: int) -> np.ndarray:
    """A smooth moving pattern plus noise, so consecutive frames differ but stay related."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = []
    for i in range(t):
        base = 127 + 80 * np.sin((xx + 7 * i) / 9.0)[..., None] * np.cos((yy - 5 * i) / 11.0)[..., None]
        base = base + np.array([0.0, 30.0, -30.0]) * (i / max(t - 1, 1))
        out.append(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).round().astype(np.uint8))
    return np.stack(out)


def smolvlm_from(model):
    """The idefics3 fixture's weights in SmolVLMForConditionalGeneration (the same architecture:
    SmolVLM's modules are Idefics3's), whose processor has the video path Idefics3's lacks."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    c = model.config
    cfg = SmolVLMConfig(vision_config=c.vision_config.to_dict(), text_config=c.text_config.to_dict(),
                        image_token_id=c.image_token_id, scale_factor=c.scale_factor,
                        tie_word_embeddings=c.tie_word_embeddings)
    cfg._attn_implementation = "eager"
    out = SmolVLMForConditionalGeneration(cfg)
    out.load_state_dict(model.state_dict(), strict=True)
    return out.eval()


def processor_for(family: str, tok):
    """(processor, frame side unit): frames are multiples of the unit, which the processor does
    not resize (Qwen: patch * merge / 2 per side unit; InternVL: the tile itself)."""
    if family == "idefics3":
        from transformers import SmolVLMProcessor
        from transformers.models.smolvlm.image_processing_pil_smolvlm import SmolVLMImageProcessorPil
        from transformers.models.smolvlm.video_processing_smolvlm import SmolVLMVideoProcessor

        from tools.fixtures import idefics3 as F

        edge = {"longest_edge": F.TILE}
        ip = SmolVLMImageProcessorPil(size={"longest_edge": 2 * F.TILE}, max_image_size=edge,
                                      image_mean=[0.5] * 3, image_std=[0.5] * 3)
        vp = SmolVLMVideoProcessor(size=edge, max_image_size=edge, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                   do_sample_frames=False)
        seq_len = (F.TILE // F.PATCH) ** 2 // (F.SCALE * F.SCALE)
        return SmolVLMProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_len=seq_len), \
            F.TILE // 2
    if family.startswith("internvl"):
        from transformers import InternVLProcessor
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil
        from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

        from tools.fixtures import internvl as F

        size = {"height": F.TILE, "width": F.TILE}
        ip = GotOcr2ImageProcessorPil(size=size, crop_to_patches=True, min_patches=1, max_patches=12,
                                      image_mean=F.IMAGENET_MEAN, image_std=F.IMAGENET_STD)
        # The mmproj's mean / std (ImageNet), as for images; the class default is CLIP's.
        vp = InternVLVideoProcessor(size=size, image_mean=F.IMAGENET_MEAN, image_std=F.IMAGENET_STD,
                                    do_sample_frames=False)
        seq_len = (F.TILE // F.PATCH) ** 2 // 4  # pixel shuffle 0.5, as the fixture
        return InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=vp, image_seq_length=seq_len), \
            F.TILE // 2
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if family == "qwen3vl":
        from transformers import Qwen3VLProcessor as Proc
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor as VP

        patch, mean, std, lo, hi = 16, [0.5] * 3, [0.5] * 3, 4096, 25165824
    else:
        from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor as VP

        if family == "qwen2vl":
            from transformers import Qwen2VLProcessor as Proc
        else:
            from transformers import Qwen2_5_VLProcessor as Proc
        patch, mean, std, lo, hi = 14, CLIP_MEAN, CLIP_STD, 56 * 56, 28 * 28 * 1280
    ip = Qwen2VLImageProcessorPil(patch_size=patch, temporal_patch_size=2, merge_size=2, image_mean=mean, image_std=std)
    vp = VP(size={"shortest_edge": lo, "longest_edge": hi}, patch_size=patch, temporal_patch_size=2, merge_size=2,
            image_mean=mean, image_std=std, do_sample_frames=False, cap_pixels_per_frame=False)
    return Proc(image_processor=ip, tokenizer=tok, video_processor=vp), patch


def make(family: str, data: Path, work: Path) -> dict:
    import torch
    from transformers.video_utils import VideoMetadata

    ref = np.load(data / family / "ref.npz")
    toks: list = []
    model, inputs, _, _ = rebuild(family, work, want_tokenizer=toks)
    d = maxdiff(run(model, inputs)[0], ref["logits_all"])
    assert d <= REBUILD_TOL, f"{family}: rebuilt model differs from ref.npz ({d})"
    proc, patch = processor_for(family, toks[0])
    side = 2 * patch
    if family == "idefics3":  # SmolVLM on the same weights: the image logits must not move
        model = smolvlm_from(model)
        d = maxdiff(run(model, inputs)[0], ref["logits_all"])
        assert d <= REBUILD_TOL, f"SmolVLM with the idefics3 weights differs from ref.npz ({d})"
    internvl = family.startswith("internvl") or family == "idefics3"  # frames as tiles, 1-D positions
    out: dict = {}
    for case, (t, fps, seed, attn) in {"a": (4, 2.0, 1, True), "b": (5, 3.0, 2, False)}.items():
        clip = frames(seed, t, side, side) if internvl else frames(seed, t, 2 * side, 3 * side)
        # duration: what transformers' decoders record (total / fps); SmolVLM prints it.
        meta = VideoMetadata(total_num_frames=t, fps=fps, frames_indices=list(range(t)), duration=t / fps)
        text = PROMPT_HF_QWEN3 if family == "qwen3vl" else PROMPT_HF_INTERNVL if internvl else PROMPT_HF
        enc = proc(text=[text], videos=[torch.from_numpy(clip)], video_metadata=[meta], do_sample_frames=False,
                   return_tensors="pt")
        ids = enc["input_ids"]
        out[f"{case}_frames"] = clip
        out[f"{case}_fps"] = np.float64(fps)
        out[f"{case}_ids"] = ids[0].numpy().astype(np.int32)
        if internvl:  # 1-D positions; the frames go in as pixel_values
            if attn:
                logits, att = run(model, dict(enc), attentions=True)
                out[f"{case}_logits_last"] = logits[-1].astype(np.float32)
                out[f"{case}_attn_last"] = att[:, :, -1, :].astype(np.float32)
            print(f"[{family}] case {case}: {len(out[f'{case}_ids'])} tokens", flush=True)
            continue
        rope_kw = {"video_grid_thw": enc["video_grid_thw"], "attention_mask": enc["attention_mask"]}
        if "second_per_grid_ts" in enc:
            rope_kw["second_per_grid_ts"] = enc["second_per_grid_ts"]
        with torch.no_grad():
            pos, _ = model.model.get_rope_index(ids, mm_token_type_ids=enc["mm_token_type_ids"], **rope_kw)
        out[f"{case}_positions"] = pos[:, 0].numpy().astype(np.int32)
        out[f"{case}_video_grid_thw"] = enc["video_grid_thw"][0].numpy().astype(np.int32)
        if attn:
            logits, att = run(model, dict(enc), attentions=True)
            out[f"{case}_logits_last"] = logits[-1].astype(np.float32)
            out[f"{case}_attn_last"] = att[:, :, -1, :].astype(np.float32)  # [L, H, n]
        print(f"[{family}] case {case}: {len(out[f'{case}_ids'])} tokens, grid {out[f'{case}_video_grid_thw']}",
              flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("families", nargs="*", help=f"subset of {list(FAMILIES)}")
    ap.add_argument("--data", type=Path, default=C.REPO / "tests" / "data")
    ap.add_argument("--dry-run", action="store_true", help="verify and compute, write nothing")
    args = ap.parse_args()
    _torchvision_functional_only()
    C.deterministic_torch()
    for f in check_families(ap, args.families, FAMILIES):
        r = in_work_dir(f, "video", lambda work, f=f: make(f, args.data, work))
        if not args.dry_run:
            save_refs(f, args.data / f / "video_ref.npz", r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
