"""`python -m tools.bench vision`: one image through corehead and through llama.cpp's mtmd, side by side.

For every model, both engines load the same GGUF text model + mmproj with the same threads,
context and prompt, in one process, and their repetitions alternate (corehead first on even
repetitions, llama.cpp first on odd ones) so both see the same machine load. Per repetition:

- encode: the image's vision tower + projector (one call: corehead `Engine.encode_image` with its
  image cache off; llama.cpp `mtmd_tokenize` + `mtmd_encode_chunk` for every image chunk). Both
  include the engine's own preprocessing (resize / tile / normalize from the same RGB8 array);
  the preprocessing alone is reported as well (corehead `preprocess_image`, llama.cpp
  `mtmd_tokenize`, which preprocesses every image it is given).
- ttft: time to the first generated token of a prompt holding one image (preprocess + encode +
  prefill + greedy pick), corehead `generate_ids(..., on_token=...)` until its first callback vs
  llama.cpp `mtmd_tokenize` + `mtmd_helper_eval_chunks` + argmax of the last logits.
- decode: greedy tokens/s after that prompt (the rest of the same generation; llama.cpp:
  `Llama.eval([token])` + numpy argmax per token, as in `python -m tools.bench text`).

Medians over the repetitions. Calls that take milliseconds (the fixtures) are averaged over up to
50 back-to-back calls per repetition after one untimed call, so neither engine is timed while the
other's worker threads still spin-wait on the 2 cores. Peak RSS of each engine (load + one image +
generation) in a fresh process. Models: the tiny test fixtures (tests/data, f16) and random-weight models with real
shapes, built once with transformers + llama.cpp's converter into ~/.cache/corehead/bench/
(text model quantized to Q4_K_M by llama.cpp, mmproj f16):

- SmolVLM-256M shapes: SigLIP-B/16 at 512 px (12 layers, 768 wide), pixel shuffle 4, SmolLM2-135M
  text (30 layers, 576 wide). The mmproj's preprocessing longest edge is 512 (one 512-px view,
  64 visual tokens); the real SmolVLM processor upscales to 2048 px and encodes 4x4 tiles + a
  global view, 17 times this work (`--smolvlm-edge 2048` measures that).
- Qwen2-VL-2B shapes: ViT 32 layers x 1280 wide, 2-D RoPE, 2x2 merger, Qwen2-1.5B text
  (28 layers, 1536 wide, M-RoPE).
- Qwen3-VL-2B shapes: ViT 24 layers x 1024 wide (learned position grid, DeepStack after blocks
  5/11/17), 2x2 merger, Qwen3-1.7B-shaped text (28 layers, 2048 wide, QK-norm, interleaved M-RoPE).
- Qwen3-VL-30B-A3B shapes, reduced: its ViT (27 x 1152, DeepStack 8/16/24) and 4 of its 48 MoE text
  layers (128 experts, 8 routed, 2048 wide), so the whole model fits this 24 GiB machine.
- InternVL3.5-2B shapes: InternViT-300M (24 x 1024, 448 px tiles, 14 px patches), pixel shuffle x0.5
  (256 tokens per tile), MLP projector, Qwen3-1.7B text (28 x 2048, QK-norm); an 896x448 image is
  2 x 1 tiles + the thumbnail in both engines.
- Pixtral-12B vision tower (24 x 1024, 16 px patches, 2-D RoPE, no patch merger, [IMG_BREAK] per
  row) with a SmolLM2-135M-shaped Mistral text model (arch `llama`, as Pixtral-12B's text).
- LLaVA-style (`--llava`): CLIP ViT-B/16 at 224 px (CLS, 12 layers, 768 wide) + MLP projector
  + SmolLM2-135M-shaped Llama text. llama.cpp's llava graph of this snapshot puts CLS after the
  patches (llama.cpp issue #25814), so its embeddings are wrong, but it does the same work.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench.common import CACHE, REPO, in_child, peak_rss_mib, quantize_with_llama_cpp, random_init
from tools.fixtures import VISION_FAMILIES, mm
from tools.fixtures import common as C

PROMPTS = {
    "llava": "USER: <__media__>\nWhat is this? ASSISTANT:",
    "idefics3": "User:<__media__>What is this?<end_of_utterance>\nAssistant:",
    "qwen2vl": "<|im_start|>user\n<__media__>What is this?<|im_end|>\n<|im_start|>assistant\n",
    "gemma3": "<start_of_turn>user\n<__media__>What is this?<end_of_turn>\n<start_of_turn>model\n",
    "internvl": "<|im_start|>user\n<__media__>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n",
    "pixtral": "[INST]<__media__>What is this?[/INST]",
    "gemma4": "<|turn>user\n<__media__>What is this?<turn|>\n<|turn>model\n",
}

# --- models -------------------------------------------------------------------------------------


def _finish(hf: Path, name: str, quant: str, pre: str = "") -> tuple[Path, Path]:
    """Convert an HF checkpoint to <name>-f16 (text, then quantized) + mmproj-<name>-f16 GGUFs."""
    model, mmproj = CACHE / f"vision-{name}-{quant}.gguf", CACHE / f"vision-mmproj-{name}-f16.gguf"
    f16 = CACHE / f"vision-{name}-f16.gguf"
    print(f"converting {name} with llama.cpp's convert_hf_to_gguf.py...", file=sys.stderr)
    C.run_converter(hf, mmproj, "f16", mmproj=True, pre=pre, name=name)
    C.run_converter(hf, f16, "f16", pre=pre, name=name)
    quantize_with_llama_cpp(f16, model, quant)
    f16.unlink()
    shutil.rmtree(hf.parent, ignore_errors=True)  # the work directory
    return model, mmproj


def _cached(name: str, quant: str) -> tuple[Path, Path] | None:
    model, mmproj = CACHE / f"vision-{name}-{quant}.gguf", CACHE / f"vision-mmproj-{name}-f16.gguf"
    return (model, mmproj) if model.exists() and mmproj.exists() else None


def _hf_checkpoint(name: str, write) -> Path:
    """The HF checkpoint of bench model `name`: written by ``write(work, hf)`` unless an earlier
    build, perhaps interrupted later, got that far (its ``saved.ok`` marker)."""
    work = CACHE / f"vision-work-{name}"
    hf = work / "hf"
    if not (hf / "saved.ok").exists():
        print(f"building random-weight {name} (f16)...", file=sys.stderr)
        write(work, hf)
        (hf / "saved.ok").touch()
    return hf


def smolvlm_256m(edge: int = 1024, quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Random weights with SmolVLM-256M's shapes; `edge` = the processor's longest edge (what the
    mmproj's clip.vision.preproc_image_size says; other edges are a copy with that key changed)."""
    name = f"smolvlm-256m-shapes-e{edge}"
    if found := _cached(name, quant):
        return found
    if edge != 512:
        import gguf

        model, mmproj512 = smolvlm_256m(512, quant)
        mmproj = CACHE / f"vision-mmproj-{name}-f16.gguf"
        tmp = mmproj.with_suffix(".tmp")
        shutil.copyfile(mmproj512, tmp)
        field = gguf.GGUFReader(str(tmp), "r+").fields["clip.vision.preproc_image_size"]
        field.parts[field.data[0]][0] = edge
        tmp.rename(mmproj)
        (CACHE / f"vision-{name}-{quant}.gguf").symlink_to(model.name)
        return _cached(name, quant)
    from tools.bench.rank import _build_smolvlm  # the same random-weight model rank uses

    work = CACHE / f"vision-work-{name}"
    print(f"building random-weight SmolVLM-256M shapes (edge {edge})...", file=sys.stderr)
    model, proc, tok, _, _ = _build_smolvlm(work, edge)
    mm.save_hf(model, proc, tok, work / "hf")
    del model
    out = _finish(work / "hf", name, quant)
    shutil.rmtree(work, ignore_errors=True)
    return out


def qwen2vl_2b(quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Random weights with Qwen2-VL-2B's shapes (vision tower, merger and Qwen2-1.5B text)."""
    name = "qwen2vl-2b-shapes"
    if found := _cached(name, quant):
        return found
    from tools.bench.rank import _build_qwen2vl  # the same random-weight Qwen2-VL-2B-shaped model rank uses

    work = CACHE / f"vision-work-{name}"
    if (work / "hf" / "saved.ok").exists():  # an interrupted earlier build got as far as the checkpoint
        return _finish(work / "hf", name, quant, pre="qwen2")
    print("building random-weight Qwen2-VL-2B shapes (f16, ~4.5 GB in memory)...", file=sys.stderr)
    model, _, tok, ip, _ = _build_qwen2vl(work)
    mm.save_hf(model, None, tok, work / "hf")
    ip.save_pretrained(str(work / "hf"))
    (work / "hf" / "saved.ok").touch()
    del model
    out = _finish(work / "hf", name, quant, pre="qwen2")
    shutil.rmtree(work, ignore_errors=True)
    return out


def _build_qwen3vl(work: Path, moe: bool):
    """Random weights (f16 in memory) with Qwen3-VL-2B's shapes, or (moe) Qwen3-VL-30B-A3B's with 4 of
    its 48 text layers (128 experts, 8 routed: ~2.5 B parameters, 5 GB in f16, 1.5 GB at Q4_K_M)."""
    tok, ip, common = _qwen_vl_parts(work)
    rope = {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True, "rope_theta": 5000000.0}
    text_cfg = dict(vocab_size=151936, hidden_size=2048, head_dim=128, max_position_embeddings=262144,
                    rms_norm_eps=1e-6, rope_parameters=rope, bos_token_id=None,
                    eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"))
    if moe:
        from transformers import Qwen3VLMoeConfig as Cfg
        from transformers import Qwen3VLMoeForConditionalGeneration as Model

        text_cfg.update(intermediate_size=6144, num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=4,
                        num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768)
        vision_cfg = dict(depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, out_hidden_size=2048,
                          deepstack_visual_indexes=[8, 16, 24])
        common["tie_word_embeddings"] = False
    else:
        from transformers import Qwen3VLConfig as Cfg
        from transformers import Qwen3VLForConditionalGeneration as Model

        text_cfg.update(intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                        tie_word_embeddings=True)
        vision_cfg = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
                          deepstack_visual_indexes=[5, 11, 17])
        common["tie_word_embeddings"] = True
    vision_cfg.update(patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                      hidden_act="gelu_pytorch_tanh")
    model = _half_model(Model, Cfg(text_config=text_cfg, vision_config=vision_cfg, **common))
    return model, tok, ip


def _qwen_vl_parts(work: Path):
    """Qwen3-VL / Qwen3.5: the byte-level BPE tokenizer with the vision tokens, the released image
    processor settings (32-px merged patches, mean/std 0.5) and the config's vision token ids."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tools.fixtures.qwenvl import SPECIALS

    tok = C.qwen2_bpe_tokenizer(work / "tok", SPECIALS)
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIALS}
    common = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    ip = Qwen2VLImageProcessorPil(min_pixels=65536, max_pixels=16777216, patch_size=16, temporal_patch_size=2,
                                  merge_size=2, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return tok, ip, common


def qwen3vl_shapes(moe: bool = False, quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Random weights with Qwen3-VL-2B's shapes (dense) or reduced Qwen3-VL-30B-A3B shapes (moe)."""
    from tools.fixtures.qwenvl import released_expert_layout

    name = "qwen3vl-30b-a3b-4layers-shapes" if moe else "qwen3vl-2b-shapes"
    if found := _cached(name, quant):
        return found

    def write(work: Path, hf: Path) -> None:
        model, tok, ip = _build_qwen3vl(work, moe)
        mm.save_hf(model, None, tok, hf)
        del model
        if moe:
            released_expert_layout(hf)
        ip.save_pretrained(str(hf))

    return _finish(_hf_checkpoint(name, write), name, quant, pre="qwen2")


def _pad_tokenizer_json(hf: Path, n_vocab: int) -> None:
    """Pad the saved tokenizer.json's base vocabulary with unreachable tokens up to n_vocab: the Gemma 4
    converter (unlike Qwen's) writes exactly the tokenizer's tokens, and llama.cpp wants one per
    embedding row."""
    tj = json.loads((hf / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    taken = set(vocab.values()) | {t["id"] for t in tj.get("added_tokens", [])}
    for i in range(n_vocab):
        if i not in taken:
            vocab[f"<unused{i}>"] = i
    (hf / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))


def gemma4_e2b(quant: str = "Q4_K_M", n_layer: int = 10) -> tuple[Path, Path]:
    """Random weights with Gemma-4-E2B's shapes (the smallest Gemma 4 with vision), `n_layer` of its
    35 text layers (the 4 sliding : 1 global pattern and half the layers KV-shared, as E2B's 20 of 35;
    the full 35 layers' per-layer-embedding table alone is 2.3 B parameters, too slow to build here).
    Sources: vision tower = transformers 5.23 Gemma4VisionConfig defaults (its docstring checkpoint is
    google/gemma-4-e2b-it): 16 x 768, 12 heads of 64, patch 16, 3x3 pooling, 10240 position rows.
    Text: the google/gemma-4-E2B-it config.json (not in the pinned trees; transformers' Gemma4TextConfig
    defaults are a larger model): hidden 1536, FFN 6144 doubled on KV-shared layers (use_double_wide_mlp,
    which the pinned converter's n_ff array handles), 8 heads / 1 KV head, head_dim 256 (512 on global
    layers), window 512, 256-wide per-layer inputs, vocabulary 262144, softcap 30; RoPE as
    transformers' defaults (sliding theta 1e4; global proportional, 0.25 of the pairs, theta 1e6)."""
    name = f"gemma4-e2b-{n_layer}of35layers-shapes"
    if found := _cached(name, quant):
        return found

    def write(work: Path, hf: Path) -> None:
        from transformers import Gemma4Config, Gemma4ForConditionalGeneration, Gemma4VisionConfig
        from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

        from tools.fixtures import gemma4 as fx

        tok = fx.gemma4_tokenizer(work)
        ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|image>", "<image|>", "<|image|>", "<|video|>")}
        tcfg = fx.gemma4_text_config(
            262144, vocab_size_per_layer_input=262144, hidden_size=1536, intermediate_size=6144,
            num_hidden_layers=n_layer, num_attention_heads=8,
            num_key_value_heads=1, head_dim=256, global_head_dim=512, max_position_embeddings=131072,
            layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * (n_layer // 5), sliding_window=512,
            num_kv_shared_layers=n_layer // 2, hidden_size_per_layer_input=256, final_logit_softcapping=30.0,
            use_double_wide_mlp=True)
        cfg = Gemma4Config(text_config=tcfg, vision_config=Gemma4VisionConfig(), audio_config=None,
                           boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"],
                           image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"], tie_word_embeddings=True)
        model = _half_model(Gemma4ForConditionalGeneration, cfg)
        mm.save_hf(model, None, tok, hf)
        del model
        _pad_tokenizer_json(hf, 262144)
        Gemma4ImageProcessorPil(patch_size=16, pooling_kernel_size=3, max_soft_tokens=280).save_pretrained(str(hf))

    return _finish(_hf_checkpoint(name, write), name, quant)


def qwen35_08b(quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Random weights with Qwen3.5-0.8B's shapes (its smallest VL model). Sources: the Qwen/Qwen3.5-0.8B
    model card ("Model Overview") and config.json (transformers' Qwen3_5Config defaults are the 27B):
    24 layers = 6 x (3 Gated DeltaNet + 1 gated attention), hidden 1024, FFN 3584, DeltaNet 16 QK / 16 V
    heads of 128 (conv kernel 4), attention 8 heads / 2 KV of 256 with 64 rotary dims (M-RoPE sections
    [11, 11, 10], theta 1e7), vocabulary 248320, tied embeddings; ViT = Qwen3-VL's without DeepStack:
    12 x 768, 12 heads, FFN 3072, patch 16, 2x2 merger to 1024, 2304 position rows."""
    name = "qwen35-0.8b-shapes"
    if found := _cached(name, quant):
        return found

    def write(work: Path, hf: Path) -> None:
        from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

        tok, ip, common = _qwen_vl_parts(work)
        rope = {"rope_type": "default", "mrope_section": [11, 11, 10], "mrope_interleaved": True,
                "rope_theta": 10000000.0, "partial_rotary_factor": 0.25}
        text_cfg = dict(vocab_size=248320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
                        num_attention_heads=8, num_key_value_heads=2, head_dim=256, linear_conv_kernel_dim=4,
                        linear_key_head_dim=128, linear_value_head_dim=128, linear_num_key_heads=16,
                        linear_num_value_heads=16, max_position_embeddings=262144, rms_norm_eps=1e-6,
                        rope_parameters=rope, bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                        tie_word_embeddings=True)
        vision_cfg = dict(depth=12, hidden_size=768, intermediate_size=3072, num_heads=12, out_hidden_size=1024,
                          patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
                          hidden_act="gelu_pytorch_tanh")
        model = _half_model(Qwen3_5ForConditionalGeneration,
                            Qwen3_5Config(text_config=text_cfg, vision_config=vision_cfg, tie_word_embeddings=True,
                                          **common))
        mm.save_hf(model, None, tok, hf)
        del model
        ip.save_pretrained(str(hf))

    hf = _hf_checkpoint(name, write)
    model, mmproj = CACHE / f"vision-{name}-{quant}.gguf", CACHE / f"vision-mmproj-{name}-f16.gguf"
    f16 = CACHE / f"vision-{name}-f16.gguf"
    print(f"converting {name} with llama.cpp's convert_hf_to_gguf.py...", file=sys.stderr)
    C.run_converter(hf, mmproj, "f16", mmproj=True, pre="qwen2", name=name)
    C.run_converter(hf, f16, "f16", pre="qwen2", name=name, extra=("--no-mtp",))  # no MTP block here
    quantize_with_llama_cpp(f16, model, quant)
    f16.unlink()
    shutil.rmtree(hf.parent, ignore_errors=True)
    return model, mmproj


def _half_model(cls, cfg):
    """A transformers model built in f16 (half the memory of f32) with random N(0, 0.02) matrices."""
    import torch

    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        model = cls(cfg).eval()
    finally:
        torch.set_default_dtype(prev)
    random_init(model)
    return model


def internvl35_2b(quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Random weights with InternVL3.5-2B's shapes: InternViT-300M (24 x 1024, 448 px tiles of 14 px
    patches, LayerNorm, q/k/v biases, layer scale), pixel shuffle x0.5 (256 tokens per tile), LayerNorm
    + 2-layer MLP projector, Qwen3-1.7B text (28 x 2048, 16 heads / 8 KV, head_dim 128, QK-norm).
    Converted as tools/fixtures/internvl.py does (the converter's OpenGVLab class names)."""
    name = "internvl35-2b-shapes"
    if found := _cached(name, quant):
        return found

    def write(work: Path, hf: Path) -> None:
        from transformers import InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig, Qwen3Config
        from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

        from tools.fixtures import internvl as fx

        tok = C.qwen2_bpe_tokenizer(work / "tok", fx.SPECIALS)
        ids = {t: tok.convert_tokens_to_ids(t) for t in fx.SPECIALS}
        tcfg = Qwen3Config(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                           num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
                           rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=None,
                           eos_token_id=ids["<|im_end|>"])
        vcfg = InternVLVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                    num_attention_heads=16, image_size=448, patch_size=14, layer_norm_eps=1e-6,
                                    hidden_act="gelu", attention_bias=True, use_qk_norm=False, norm_type="layer_norm")
        cfg = InternVLConfig(vision_config=vcfg, text_config=tcfg, image_token_id=ids["<IMG_CONTEXT>"],
                             image_seq_length=256, downsample_ratio=0.5, projector_hidden_act="gelu",
                             vision_feature_layer=-1, vision_feature_select_strategy="default",
                             tie_word_embeddings=True)
        model = _half_model(InternVLForConditionalGeneration, cfg)
        mm.save_hf(model, None, tok, hf)
        del model
        GotOcr2ImageProcessorPil(size={"height": 448, "width": 448}, crop_to_patches=True, min_patches=1,
                                 max_patches=12, image_mean=fx.IMAGENET_MEAN,
                                 image_std=fx.IMAGENET_STD).save_pretrained(str(hf))
        fx.converter_layout(hf, "Qwen3ForCausalLM", max_tiles=12)

    return _finish(_hf_checkpoint(name, write), name, quant, pre="qwen2")


def pixtral_12b_vision(quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """Pixtral-12B's vision tower with a small text model: the LLaVA-class Pixtral layout (no patch
    merger, projector 1024 -> text width -> text width with biases, [IMG_BREAK] after every row of
    16 px patches, 1024 px maximum, 24 x 1024 ViT with 2-D RoPE and SiLU-gated FFN), and a Mistral
    text model with SmolLM2-135M's shapes (30 x 576, 9 heads / 3 KV) converted as `llama`, as
    Pixtral-12B's text is."""
    name = "pixtral-12b-vision-smalltext-shapes"
    if found := _cached(name, quant):
        return found

    def write(work: Path, hf: Path) -> None:
        from transformers import LlavaConfig, LlavaForConditionalGeneration, MistralConfig, PixtralVisionConfig
        from transformers.models.pixtral.image_processing_pil_pixtral import PixtralImageProcessorPil

        from tools.fixtures import mistral3 as fx

        sp = C.train_spm(work / "sp", fx.SPECIALS)
        tok, _ = C.spm_tokenizer_dir(work / "tok", sp, fx.SPECIALS)
        vcfg = PixtralVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                   num_attention_heads=16, num_channels=3, image_size=1024, patch_size=16,
                                   hidden_act="silu", rope_parameters={"rope_type": "axial", "rope_theta": 10000.0})
        tcfg = MistralConfig(vocab_size=32768, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                             num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
                             rms_norm_eps=1e-5, sliding_window=None,
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                             bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
        cfg = LlavaConfig(vision_config=vcfg, text_config=tcfg, image_token_index=tok.convert_tokens_to_ids("[IMG]"),
                          vision_feature_layer=-1, vision_feature_select_strategy="full", projector_hidden_act="gelu",
                          multimodal_projector_bias=True, tie_word_embeddings=False)
        model = _half_model(LlavaForConditionalGeneration, cfg)
        mm.save_hf(model, None, tok, hf)
        del model
        PixtralImageProcessorPil(size={"longest_edge": 1024}, patch_size={"height": 16, "width": 16},
                                 image_mean=fx.CLIP_MEAN, image_std=fx.CLIP_STD, resample=3).save_pretrained(str(hf))

    hf = _hf_checkpoint(name, write)
    model, mmproj = CACHE / f"vision-{name}-{quant}.gguf", CACHE / f"vision-mmproj-{name}-f16.gguf"
    from tools.fixtures import mistral3 as fx

    print(f"converting {name} with llama.cpp's convert_hf_to_gguf.py...", file=sys.stderr)
    fx._convert(hf, mmproj, "f16", "mmproj")  # keeps the [IMG_BREAK] row (v.token_embd.img_break)
    f16 = CACHE / f"vision-{name}-f16.gguf"
    C.run_converter(hf, f16, "f16", name=name)
    quantize_with_llama_cpp(f16, model, quant)
    f16.unlink()
    shutil.rmtree(hf.parent, ignore_errors=True)  # the work folder
    return model, mmproj


def llava_style(quant: str = "Q4_K_M") -> tuple[Path, Path]:
    """LLaVA-1.5 layout at small size: CLIP ViT-B/16 at 224 px (CLS, quick_gelu) + 2-layer MLP
    projector + a Llama with SmolLM2-135M's shapes; the mmproj through llama.cpp's legacy converter
    (as tools/fixtures/llava.py does), which keeps the blocks up to the feature layer (-2)."""
    name = "llava-vitb16-smollm2-shapes"
    if found := _cached(name, quant):
        return found
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from tools.fixtures import llava as fx

    work = CACHE / f"vision-work-{name}"
    sp = C.train_spm(work / "sp", ["<image>"])
    tok, _ = C.spm_tokenizer_dir(work / "tok", sp, ["<image>"])
    vcfg = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            image_size=224, patch_size=16, projection_dim=512, layer_norm_eps=1e-5,
                            hidden_act="quick_gelu")
    tcfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                       num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5,
                       rope_theta=100000.0, bos_token_id=1, eos_token_id=2)
    cfg = LlavaConfig(vision_config=vcfg, text_config=tcfg, image_token_index=tok.convert_tokens_to_ids("<image>"),
                      image_seq_length=196, vision_feature_layer=-2, vision_feature_select_strategy="default",
                      projector_hidden_act="gelu", multimodal_projector_bias=True, tie_word_embeddings=False)
    print("building random-weight LLaVA-style model (CLIP ViT-B/16 + SmolLM2-135M shapes)...", file=sys.stderr)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    random_init(model)
    ip = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                               do_center_crop=True, do_resize=True, resample=3, image_mean=fx.CLIP_MEAN,
                               image_std=fx.CLIP_STD)
    proc = LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=16, vision_feature_select_strategy="default",
                          image_token="<image>", num_additional_image_tokens=1)
    hf = work / "hf"
    mm.save_hf(model, proc, tok, hf)
    vdir = work / "vision"
    model.model.vision_tower.save_pretrained(str(vdir))
    proj = {"multi_modal_projector." + k: v.detach().clone().float()
            for k, v in model.model.multi_modal_projector.state_dict().items()}
    torch.save(proj, work / "llava.projector")
    del model
    model_file, mmproj = CACHE / f"vision-{name}-{quant}.gguf", CACHE / f"vision-mmproj-{name}-f16.gguf"
    fx._legacy_mmproj(vdir, work / "llava.projector", mmproj, f32=False)
    f16 = CACHE / f"vision-{name}-f16.gguf"
    C.run_converter(hf, f16, "f16", name=name)
    quantize_with_llama_cpp(f16, model_file, quant)
    f16.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return model_file, mmproj


def test_image(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB8 picture with a few rectangles (no decoding in either engine)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / (17 + 9 * c) + y / (23 + 5 * c) + c) for c in range(3)], axis=-1)
    for _ in range(6):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        img[y0:y0 + rng.integers(8, h // 2), x0:x0 + rng.integers(8, w // 2)] = rng.integers(0, 256, 3)
    return np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8))


def _wanted(name: str, args) -> bool:
    return not args.only or any(o.lower() in name.lower() for o in args.only)


def model_specs(args) -> list[dict]:
    """name, files, prompt and image of every benchmarked model (building the big ones once)."""
    from PIL import Image

    specs = []
    if not args.no_fixtures:
        for fam in VISION_FAMILIES:
            d = REPO / "tests" / "data" / fam
            if not (d / "meta.json").exists():  # registered, fixture not built yet
                continue
            prompt = json.loads((d / "meta.json").read_text())["prompt"]  # as PROMPTS, for the fixture's family
            img = np.asarray(Image.open(d / "image.png").convert("RGB"))
            specs.append({"model": f"fixture {fam} (f16)", "family": fam, "file": d / "model-f16.gguf",
                          "mmproj": d / "mmproj-f16.gguf", "prompt": prompt, "image": img, "reps": args.reps * 3})
    big = [(f"SmolVLM-256M shapes (edge {args.smolvlm_edge}) Q4_K_M + f16 mmproj", "idefics3",
            lambda: smolvlm_256m(args.smolvlm_edge), tuple(args.smolvlm_image)),
           ("Qwen2-VL-2B shapes Q4_K_M + f16 mmproj", "qwen2vl", qwen2vl_2b, tuple(args.qwen_image)),
           ("Qwen3-VL-2B shapes Q4_K_M + f16 mmproj", "qwen2vl", qwen3vl_shapes, tuple(args.qwen3_image)),
           ("Qwen3-VL-30B-A3B shapes (4 of 48 text layers) Q4_K_M + f16 mmproj", "qwen2vl",
            lambda: qwen3vl_shapes(moe=True), tuple(args.qwen3_image)),
           ("InternVL3.5-2B shapes Q4_K_M + f16 mmproj", "internvl", internvl35_2b, tuple(args.internvl_image)),
           ("Pixtral-12B vision tower + SmolLM2-135M-shaped text Q4_K_M + f16 mmproj", "pixtral", pixtral_12b_vision,
            tuple(args.pixtral_image)),
           ("Gemma-4-E2B shapes (10 of 35 text layers) Q4_K_M + f16 mmproj", "gemma4", gemma4_e2b,
            tuple(args.gemma4_image)),
           ("Qwen3.5-0.8B shapes Q4_K_M + f16 mmproj", "qwen2vl", qwen35_08b, tuple(args.qwen35_image))]
    if args.llava:
        big.append(("LLaVA-style ViT-B/16 + SmolLM2-135M shapes Q4_K_M + f16 mmproj", "llava", llava_style,
                    (320, 240)))
    for name, fam, build, (w, h) in big:
        model, mmproj = build() if _wanted(name, args) else (None, None)
        specs.append({"model": name, "family": fam, "file": model, "mmproj": mmproj, "prompt": PROMPTS[fam],
                      "image": test_image(w, h), "reps": args.reps})
    specs = [s for s in specs if _wanted(s["model"], args)]
    return specs


# --- engines ------------------------------------------------------------------------------------


class CoreheadRunner:
    def __init__(self, model: Path, mmproj: Path, threads: int, n_ctx: int) -> None:
        from corehead import Engine

        self.eng = Engine(model, mmproj=mmproj, n_threads=threads, n_ctx=n_ctx)
        self.eng.set_image_cache(0)  # every repetition encodes

    def _fresh(self) -> float:
        """Drop the engine's last preprocessed image, so every timed call preprocesses as mtmd
        does; returns the start time."""
        self.eng.clear_image_cache()
        return time.perf_counter()

    def preprocess(self, img: np.ndarray) -> float:
        t = self._fresh()
        self.eng.preprocess_image(img)
        return time.perf_counter() - t

    def encode(self, img: np.ndarray) -> tuple[float, int]:
        t = self._fresh()
        e = self.eng.encode_image(img)
        return time.perf_counter() - t, int(e.shape[0])

    def generate(self, prompt: str, img: np.ndarray, n_gen: int) -> tuple[float, float, list[int]]:
        stamps: list[float] = []
        ids: list[int] = []

        def on_token(tok: int) -> bool:
            stamps.append(time.perf_counter())
            ids.append(tok)
            return True

        t = self._fresh()
        self.eng.generate_ids(prompt, images=[img], max_tokens=n_gen, stop_at_eog=False, on_token=on_token)
        assert len(ids) == n_gen, len(ids)
        return stamps[0] - t, (n_gen - 1) / (stamps[-1] - stamps[0]), ids

    def n_prompt_tokens(self, prompt: str, img: np.ndarray) -> int:
        return len(self.eng.multimodal_tokens(prompt, [img]))

    def close(self) -> None:
        self.eng.close()


_LOG_KEEP: list = []


def _quiet_mtmd(mtmd, lines: list[str]) -> None:
    """Silence mtmd's logging; keep lines that say how it runs (flash attention, warm-up)."""
    import llama_cpp

    @llama_cpp.llama_log_callback
    def cb(level, text, user_data):
        s = text.decode(errors="replace") if text else ""
        if "flash" in s.lower():
            lines.append(s.strip())

    _LOG_KEEP.append(cb)
    mtmd.mtmd_log_set(cb, None)
    mtmd.mtmd_helper_log_set(cb, None)


class MtmdRunner:
    def __init__(self, model: Path, mmproj: Path, threads: int, n_ctx: int) -> None:
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        self.lc, self.mtmd = llama_cpp, mtmd
        self.log: list[str] = []
        _quiet_mtmd(mtmd, self.log)
        from tools.peers.llama_cpp_peer import load_llama  # extra CPU buffer types off (AMX hosts)

        self.llm = load_llama(model, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=threads,
                              n_threads_batch=threads, flash_attn=True, verbose=False)
        p = mtmd.mtmd_context_params_default()
        p.use_gpu = False
        p.print_timings = False
        p.n_threads = threads
        self.ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), self.llm.model, p)
        if not self.ctx:
            raise RuntimeError(f"mtmd_init_from_file failed for {mmproj}")

    def unsupported(self, family: str) -> str | None:
        """Why mtmd cannot run this model (it would abort the process), or None."""
        if family == "idefics3":
            ids = self.llm.tokenize(b"\n\n", add_bos=False, special=True)
            if len(ids) != 1:
                return "mtmd's idefics3 layout needs a '\\n\\n' token, which this vocabulary lacks"
        return None

    def _tokenize(self, prompt: str, img: np.ndarray):
        m = self.mtmd
        h, w, _ = img.shape
        data = np.ascontiguousarray(img)
        bitmap = m.mtmd_bitmap_init(w, h, data.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        text = m.mtmd_input_text()
        raw = prompt.encode()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
        chunks = m.mtmd_input_chunks_init()
        arr = (m.mtmd_bitmap_p_ctypes * 1)(bitmap)
        rc = m.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), arr, 1)
        m.mtmd_bitmap_free(bitmap)
        if rc != 0:
            m.mtmd_input_chunks_free(chunks)
            raise RuntimeError(f"mtmd_tokenize failed ({rc})")
        return chunks

    def preprocess(self, img: np.ndarray) -> float:
        t = time.perf_counter()
        chunks = self._tokenize(self.mtmd.mtmd_default_marker().decode(), img)
        dt = time.perf_counter() - t
        self.mtmd.mtmd_input_chunks_free(chunks)
        return dt

    def encode(self, img: np.ndarray) -> tuple[float, int]:
        m = self.mtmd
        t = time.perf_counter()
        chunks = self._tokenize(m.mtmd_default_marker().decode(), img)
        n = 0
        for i in range(m.mtmd_input_chunks_size(chunks)):
            chunk = m.mtmd_input_chunks_get(chunks, i)
            if m.mtmd_input_chunk_get_type(chunk) == m.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                if m.mtmd_encode_chunk(self.ctx, chunk) != 0:
                    raise RuntimeError("mtmd_encode_chunk failed")
                n += m.mtmd_input_chunk_get_n_tokens(chunk)
        dt = time.perf_counter() - t
        m.mtmd_input_chunks_free(chunks)
        return dt, n

    def _logits(self) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.llm.n_vocab(),))

    def generate(self, prompt: str, img: np.ndarray, n_gen: int) -> tuple[float, float, list[int]]:
        lc, m = self.lc, self.mtmd
        lc.llama_memory_clear(lc.llama_get_memory(self.llm.ctx), True)
        self.llm.n_tokens = 0
        t = time.perf_counter()
        chunks = self._tokenize(prompt, img)
        new_n_past = lc.llama_pos(0)
        rc = m.mtmd_helper_eval_chunks(self.ctx, self.llm.ctx, chunks, 0, 0, 512, True, ctypes.byref(new_n_past))
        if rc != 0:
            raise RuntimeError(f"mtmd_helper_eval_chunks failed ({rc})")
        ids = [int(np.argmax(self._logits()))]
        t1 = time.perf_counter()
        m.mtmd_input_chunks_free(chunks)
        self.llm.n_tokens = new_n_past.value
        t2 = time.perf_counter()
        for _ in range(n_gen - 1):
            self.llm.eval([ids[-1]])
            ids.append(int(np.argmax(self._logits())))
        t3 = time.perf_counter()
        return t1 - t, (n_gen - 1) / (t3 - t2), ids

    def n_prompt_tokens(self, prompt: str, img: np.ndarray) -> int:
        chunks = self._tokenize(prompt, img)
        n = self.mtmd.mtmd_helper_get_n_tokens(chunks)
        self.mtmd.mtmd_input_chunks_free(chunks)
        return int(n)

    def close(self) -> None:
        self.mtmd.mtmd_free(self.ctx)
        self.llm.close()


RUNNERS = {"corehead": CoreheadRunner, "llama_cpp": MtmdRunner}


def _rss_child(engine: str, model: str, mmproj: str, prompt: str, img: np.ndarray, threads: int, n_ctx: int,
               n_gen: int) -> dict:
    """In a fresh process: load one engine, one image prompt + n_gen tokens; peak RSS."""
    base = peak_rss_mib()
    r = RUNNERS[engine](Path(model), Path(mmproj), threads, n_ctx)
    loaded = peak_rss_mib()
    r.generate(prompt, img, n_gen)
    return {"peak_rss_mib": peak_rss_mib(), "after_load_mib": loaded, "interpreter_mib": base}


# --- the benchmark ------------------------------------------------------------------------------


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _timed(fn, inner: int):
    """(When inner > 1) fn() once untimed, then `inner` times: (mean seconds of the timed calls as returned by fn's
    first element, the last result). The untimed call lets the other engine's worker threads stop
    spinning (ggml's thread pool and llama.cpp's OpenMP threads spin-wait after a graph, which on 2
    cores halves the next millisecond-scale call); `inner` > 1 averages the fixtures' 1 ms calls."""
    if inner > 1:
        fn()
    res = [fn() for _ in range(inner)]
    return [statistics.fmean(col) if isinstance(col[0], float) else col[-1] for col in zip(*res)]


def bench_model(spec: dict, threads: int, n_ctx: int, n_gen: int) -> dict:
    """Both engines on one model in this process, repetitions alternating between them."""
    prompt, img, reps = spec["prompt"], spec["image"], spec["reps"]
    out: dict = {"model": spec["model"], "family": spec["family"], "file": str(spec["file"]),
                 "mmproj": str(spec["mmproj"]), "threads": threads, "image_wh": [img.shape[1], img.shape[0]],
                 "generated": n_gen, "repetitions": reps, "load_before": _load()}
    runners = {}
    inner = 1  # calls averaged per sample: more for the millisecond fixtures (set at warm-up)
    for name, cls in RUNNERS.items():
        t = time.perf_counter()
        r = cls(spec["file"], spec["mmproj"], threads, n_ctx)
        load_s = time.perf_counter() - t
        why = r.unsupported(spec["family"]) if hasattr(r, "unsupported") else None
        if why:
            out[name] = {"skipped": why}
            r.close()
            continue
        runners[name] = r
        warm_s, _ = r.encode(img)  # warm-up: caches, thread pools, allocator
        inner = max(inner, min(50, int(0.1 / max(warm_s, 1e-4))))
        r.generate(prompt, img, 2)
        out[name] = {"load_s": load_s, "prompt_tokens": r.n_prompt_tokens(prompt, img)}
    samples = {name: {"preprocess_s": [], "encode_s": [], "ttft_s": [], "decode_tok_s": []} for name in runners}
    order = list(runners)
    ids = {}
    for rep in range(reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            r, s = runners[name], samples[name]
            (pre,) = _timed(lambda r=r: (r.preprocess(img),), inner)
            s["preprocess_s"].append(pre)
            dt, out[name]["visual_tokens"] = _timed(lambda r=r: r.encode(img), inner)
            s["encode_s"].append(dt)
            ttft, dec, ids[name] = _timed(lambda r=r: r.generate(prompt, img, n_gen), inner)
            s["ttft_s"].append(ttft)
            s["decode_tok_s"].append(dec)
        print(f"  rep {rep + 1}/{reps}: " + ", ".join(
            f"{n} encode {samples[n]['encode_s'][-1]:.3f}s ttft {samples[n]['ttft_s'][-1]:.3f}s "
            f"decode {samples[n]['decode_tok_s'][-1]:.1f} tok/s" for n in order), file=sys.stderr, flush=True)
    for name, r in runners.items():
        s = samples[name]
        out[name].update({k: statistics.median(v) for k, v in s.items()})
        out[name]["samples"] = s
        out[name]["first_tokens"] = ids[name][:8]
        if name == "llama_cpp":
            out["mtmd_log"] = r.log
        r.close()
    out["load_after"] = _load()
    out["calls_per_sample"] = inner
    ch, lc = out["corehead"], out["llama_cpp"]
    if "skipped" not in lc:
        out["encode_ratio"] = lc["encode_s"] / ch["encode_s"]  # > 1: corehead faster
        out["ttft_ratio"] = lc["ttft_s"] / ch["ttft_s"]
        out["decode_ratio"] = ch["decode_tok_s"] / lc["decode_tok_s"]
        out["same_greedy_tokens"] = ch["first_tokens"] == lc["first_tokens"]
    return out


def native_mtmd(spec: dict, threads: int, n_ctx: int, n_gen: int, reps: int) -> dict:
    """llama.cpp's own llama-mtmd-cli (built from the pinned tree, tools/peers/native_peer.py) on the
    same files and image: `reps` runs, medians; how it is timed: native_peer.mtmd_cli."""
    from tools.peers import native_peer

    runs = [native_peer.mtmd_cli_on_arrays(spec["file"], spec["mmproj"], [spec["image"]], "<__media__>What is this?",
                                           threads, n_gen, n_ctx) for _ in range(reps)]
    return {"encode_s": statistics.median(sum(r["encode_ms"]) / 1000 for r in runs),
            "ttft_s": statistics.median(r["ttft_s"] for r in runs),
            "decode_tok_s": statistics.median(r["decode_tok_s"] for r in runs), "runs": runs}


def run(args) -> dict:
    specs = model_specs(args)
    rows = []
    for threads in [args.threads] + [t for t in args.also_threads if t != args.threads]:
        for spec in specs:
            print(f"{spec['model']}, {threads} thread(s) (load {_load()}):", file=sys.stderr, flush=True)
            try:
                row = in_child(bench_model, spec, threads, args.n_ctx, args.vision_gen)
            except Exception as e:  # noqa: BLE001 - a native abort in one model's run
                print(f"  failed: {e!r}", file=sys.stderr)
                rows.append({"model": spec["model"], "threads": threads, "failed": repr(e)})
                continue
            if not args.no_rss:
                for name in RUNNERS:
                    if "skipped" not in row[name]:
                        row[name].update(in_child(_rss_child, name, str(spec["file"]), str(spec["mmproj"]),
                                                   spec["prompt"], spec["image"], threads, args.n_ctx,
                                                   args.vision_gen))
            # llama-mtmd-cli's TTFT and encode come from its millisecond log stamps: meaningless for
            # the ~1 ms fixtures, so it runs on the real-shape models only.
            if not args.no_native and not spec["model"].startswith("fixture"):
                from tools.peers.llama_cpp_peer import PeerCrashed

                try:
                    # decode over >= 128 tokens: timed from the outside (native_peer.mtmd_cli)
                    row["llama_mtmd_cli"] = native_mtmd(spec, threads, args.n_ctx, max(128, args.vision_gen),
                                                        spec["reps"])
                    nat, c = row["llama_mtmd_cli"], row["corehead"]
                    row["native_encode_ratio"] = nat["encode_s"] / c["encode_s"]
                    row["native_ttft_ratio"] = nat["ttft_s"] / c["ttft_s"]
                    row["native_decode_ratio"] = c["decode_tok_s"] / nat["decode_tok_s"]
                    print(f"  llama-mtmd-cli: encode {nat['encode_s']:.3f} s ({row['native_encode_ratio']:.2f}x), "
                          f"ttft {nat['ttft_s']:.3f} s ({row['native_ttft_ratio']:.2f}x), decode "
                          f"{nat['decode_tok_s']:.1f} tok/s ({row['native_decode_ratio']:.2f}x)", file=sys.stderr)
                except PeerCrashed as e:
                    row["llama_mtmd_cli"] = {"skipped": str(e)}
            c, ll = row["corehead"], row["llama_cpp"]
            if "skipped" in ll:
                print(f"  corehead encode {c['encode_s']:.3f} s, ttft {c['ttft_s']:.3f} s, decode "
                      f"{c['decode_tok_s']:.1f} tok/s; llama.cpp skipped: {ll['skipped']}", file=sys.stderr)
            else:
                print(f"  encode {c['encode_s']:.3f} vs {ll['encode_s']:.3f} s ({row['encode_ratio']:.2f}x), "
                      f"ttft {c['ttft_s']:.3f} vs {ll['ttft_s']:.3f} s ({row['ttft_ratio']:.2f}x), decode "
                      f"{c['decode_tok_s']:.1f} vs {ll['decode_tok_s']:.1f} tok/s ({row['decode_ratio']:.2f}x)",
                      file=sys.stderr)
            rows.append(row)
    return {"bench": "vision", "rows": rows, "target": 1.0,
            "ratios": "llama.cpp time / corehead time for encode and TTFT, corehead / llama.cpp tok/s for decode: "
                      ">= 1.0 means corehead is at least as fast"}


def _num(d: dict, k: str, f: str) -> str:
    return format(d[k], f) if k in d else "-"


def _ratio(r: dict, k: str) -> str:
    return f"{r[k]:.2f}x" if k in r else "-"


def markdown(result: dict) -> str:
    lines = ["| model | threads | image -> visual tokens | encode s corehead | llama-cpp-python mtmd | ratio "
             "| llama-mtmd-cli | ratio | TTFT s corehead | llama-cpp-python mtmd | ratio | llama-mtmd-cli | ratio "
             "| decode tok/s corehead | llama-cpp-python | ratio | llama-mtmd-cli | ratio "
             "| peak RSS MiB corehead / llama-cpp-python | load |",
             "|" + "---|" * 20]
    notes = []
    for r in result["rows"]:
        if "failed" in r:
            notes.append(f"{r['model']} ({r['threads']} threads) failed: {r['failed']}")
            continue
        c, ll = r["corehead"], r["llama_cpp"]
        w, h = r["image_wh"]
        if "skipped" in ll:
            notes.append(f"{r['model']}: llama.cpp not run ({ll['skipped']}).")
            ll = {"visual_tokens": c["visual_tokens"]}
        vis = str(c["visual_tokens"])
        if ll["visual_tokens"] != c["visual_tokens"]:
            vis += f" / {ll['visual_tokens']}"
        rss = f"{c.get('peak_rss_mib', 0):.0f} / {ll.get('peak_rss_mib', 0):.0f}" if "peak_rss_mib" in c else "-"

        nat = r.get("llama_mtmd_cli", {})
        if "skipped" in nat:
            notes.append(f"{r['model']}: llama-mtmd-cli not run ({nat['skipped']}).")
        lines.append(f"| {r['model']} | {r['threads']} | {w}x{h} -> {vis} | {_num(c, 'encode_s', '.4f')} | "
                     f"{_num(ll, 'encode_s', '.4f')} | {_ratio(r, 'encode_ratio')} | {_num(nat, 'encode_s', '.4f')} | "
                     f"{_ratio(r, 'native_encode_ratio')} | {_num(c, 'ttft_s', '.4f')} | "
                     f"{_num(ll, 'ttft_s', '.4f')} | {_ratio(r, 'ttft_ratio')} | {_num(nat, 'ttft_s', '.4f')} | "
                     f"{_ratio(r, 'native_ttft_ratio')} | {_num(c, 'decode_tok_s', '.1f')} | "
                     f"{_num(ll, 'decode_tok_s', '.1f')} | {_ratio(r, 'decode_ratio')} | "
                     f"{_num(nat, 'decode_tok_s', '.1f')} | {_ratio(r, 'native_decode_ratio')} | {rss} | "
                     f"{r['load_before'].split()[0]} |")
    table = "\n".join(lines)
    return table + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")


def add_arguments(ap) -> None:
    g = ap.add_argument_group("vision")
    g.add_argument("--no-fixtures", action="store_true", help="vision: skip the tiny test fixtures")
    g.add_argument("--no-rss", action="store_true", help="vision: skip the fresh-process peak RSS runs")
    g.add_argument("--no-native", action="store_true", help="vision: skip llama.cpp's own llama-mtmd-cli")
    g.add_argument("--llava", action="store_true", help="vision: add the LLaVA-style model (CLIP ViT-B/16)")
    g.add_argument("--only", nargs="*", default=[], help="vision: models whose name contains one of these")
    g.add_argument("--also-threads", type=int, nargs="*", default=[], help="vision: more thread counts to run")
    g.add_argument("--smolvlm-edge", type=int, default=1024, help="vision: SmolVLM longest edge (default 1024)")
    g.add_argument("--smolvlm-image", type=int, nargs=2, default=(960, 480), metavar=("W", "H"))
    g.add_argument("--qwen-image", type=int, nargs=2, default=(224, 224), metavar=("W", "H"))
    g.add_argument("--qwen3-image", type=int, nargs=2, default=(448, 448), metavar=("W", "H"),
                   help="vision: Qwen3-VL image (default 448x448: 196 visual tokens in both engines)")
    g.add_argument("--internvl-image", type=int, nargs=2, default=(896, 448), metavar=("W", "H"),
                   help="vision: InternVL image (default 896x448: 2 x 1 tiles + thumbnail = 768 visual tokens, the "
                   "grid both engines pick)")
    g.add_argument("--pixtral-image", type=int, nargs=2, default=(512, 384), metavar=("W", "H"),
                   help="vision: Pixtral image (default 512x384: 32 x 24 patches = 768 visual tokens + 24 row "
                   "breaks, below both engines' size limits)")
    g.add_argument("--gemma4-image", type=int, nargs=2, default=(768, 768), metavar=("W", "H"),
                   help="vision: Gemma 4 image (default 768x768: 48 x 48 patches pooled 3x3 = 256 visual tokens, "
                   "within its processor's 280)")
    g.add_argument("--qwen35-image", type=int, nargs=2, default=(448, 448), metavar=("W", "H"),
                   help="vision: Qwen3.5 image (default 448x448: 196 visual tokens, as Qwen3-VL)")
    g.add_argument("--n-ctx", type=int, default=2048, help="vision: context of both engines")
    g.add_argument("--vision-gen", type=int, default=32, help="vision: greedy tokens per generation (default 32)")
