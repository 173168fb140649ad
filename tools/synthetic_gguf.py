"""Write small random-weight GGUF files with real layouts, using llama.cpp's `gguf` package.

Used by the tests (valid files, and bad files derived from them) and to make the tiny
model shipped in the package until the trained toy VLM replaces it. Shapes follow what
llama.cpp's converters write (numpy order is the reverse of ggml's ne order).
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

# A tiny SentencePiece-style vocabulary: specials, 256 byte-fallback tokens, a few words.
WORDS = ["▁the", "▁a", "▁cat", "▁dog", "▁is", "▁red", "▁blue", "▁What", "▁color", "?", "▁", "e", "t", "a"]


def tiny_spm_vocab() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + WORDS
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(WORDS))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(WORDS)
    return tokens, scores, types


def _copy_tokenizer(w: gguf.GGUFWriter, vocab_file: Path) -> int:
    """Copy every tokenizer.* key of a (vocab-only) GGUF, e.g. llama.cpp's ggml-vocab-qwen2.gguf."""
    r = gguf.GGUFReader(str(vocab_file))
    n_tokens = 0
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        value = field.contents()
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, value, vtype, sub_type=field.types[-1])
        else:
            w.add_key_value(key, value, vtype)
        if key == "tokenizer.ggml.tokens":
            n_tokens = len(value)
    return n_tokens


def _add_tokenizer(w: gguf.GGUFWriter, vocab_file: Path | None = None) -> int:
    if vocab_file is not None:
        return _copy_tokenizer(w, vocab_file)
    tokens, scores, types = tiny_spm_vocab()
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    return len(tokens)


def text_tensors(arch: str, n_layer: int, n_embd: int, n_head: int, n_head_kv: int, n_ff: int, n_vocab: int,
                 head_dim: int, tied: bool) -> dict[str, tuple[int, ...]]:
    """name -> numpy shape, as the converter writes them."""
    q, kv = n_head * head_dim, n_head_kv * head_dim
    t: dict[str, tuple[int, ...]] = {"token_embd.weight": (n_vocab, n_embd), "output_norm.weight": (n_embd,)}
    if not tied:
        t["output.weight"] = (n_vocab, n_embd)
    for i in range(n_layer):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"] = (n_embd,)
        t[b + "attn_q.weight"] = (q, n_embd)
        t[b + "attn_k.weight"] = (kv, n_embd)
        t[b + "attn_v.weight"] = (kv, n_embd)
        t[b + "attn_output.weight"] = (n_embd, q)
        t[b + "ffn_norm.weight"] = (n_embd,)
        t[b + "ffn_gate.weight"] = (n_ff, n_embd)
        t[b + "ffn_up.weight"] = (n_ff, n_embd)
        t[b + "ffn_down.weight"] = (n_embd, n_ff)
        if arch in ("qwen2", "qwen2vl"):
            t[b + "attn_q.bias"] = (q,)
            t[b + "attn_k.bias"] = (kv,)
            t[b + "attn_v.bias"] = (kv,)
        if arch == "gemma3":
            t[b + "attn_q_norm.weight"] = (head_dim,)
            t[b + "attn_k_norm.weight"] = (head_dim,)
            t[b + "post_attention_norm.weight"] = (n_embd,)
            t[b + "post_ffw_norm.weight"] = (n_embd,)
    return t


def _write_tensors(w: gguf.GGUFWriter, shapes: dict[str, tuple[int, ...]], rng: np.random.Generator,
                   dtype: type, std: float = 0.05) -> None:
    for name, shape in shapes.items():
        if len(shape) == 1:
            data = (1.0 + 0.1 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)  # norms/biases: F32
        else:
            data = std * rng.standard_normal(shape, dtype=np.float32)
            # llama.cpp's converter keeps position embeddings in F32 (its CPU add needs an F32 addend)
            data = data.astype(np.float32 if name.endswith("position_embd.weight") else dtype)
        w.add_tensor(name, data)


def write_text_model(path: str | Path, arch: str = "llama", n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                     n_head_kv: int = 2, n_ff: int = 128, n_ctx: int = 512, dtype: type = np.float32, seed: int = 0,
                     tied: bool = False, shape_overrides: dict[str, tuple[int, ...]] | None = None,
                     drop: tuple[str, ...] = (), extra: dict[str, tuple[int, ...]] | None = None,
                     kv_overrides: dict[str, int] | None = None, vocab_file: Path | None = None,
                     std: float = 0.05) -> Path:
    """A random-weight language model; the *_overrides/drop/extra knobs make deliberately bad files."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"synthetic-{arch}")
    w.add_file_type(1 if dtype == np.float16 else 0)
    n_vocab = _add_tokenizer(w, vocab_file)
    head_dim = n_embd // n_head
    hp = {"block_count": n_layer, "embedding_length": n_embd, "feed_forward_length": n_ff,
          "attention.head_count": n_head, "attention.head_count_kv": n_head_kv, "context_length": n_ctx,
          "rope.dimension_count": head_dim}
    hp.update(kv_overrides or {})
    for key, val in hp.items():
        w.add_uint32(f"{arch}.{key}", val)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    if arch == "qwen2vl":
        sections = [head_dim // 8, head_dim // 8 + head_dim // 16, head_dim // 16, 0]
        w.add_array("qwen2vl.rope.dimension_sections", sections)
    if arch == "gemma3":
        w.add_uint32("gemma3.attention.sliding_window", 16)
    shapes = text_tensors(arch, n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, head_dim, tied)
    for name in drop:
        shapes.pop(name)
    shapes.update(shape_overrides or {})
    shapes.update(extra or {})
    _write_tensors(w, shapes, rng, dtype, std)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def mmproj_tensors(projector: str, n_layer: int, n_embd: int, n_ff: int, patch: int, n_patches: int,
                   n_out: int, scale_factor: int = 2) -> dict[str, tuple[int, ...]]:
    t: dict[str, tuple[int, ...]] = {"v.patch_embd.weight": (n_embd, 3, patch, patch), "v.patch_embd.bias": (n_embd,)}
    if projector == "qwen2vl_merger":  # two temporal patch slices, 2-D RoPE, 2x2 merger MLP
        del t["v.patch_embd.bias"]
        t["v.patch_embd.weight.1"] = (n_embd, 3, patch, patch)
        t["v.post_ln.weight"] = (n_embd,)
        t["v.post_ln.bias"] = (n_embd,)
        t["mm.0.weight"] = (4 * n_embd, 4 * n_embd)
        t["mm.0.bias"] = (4 * n_embd,)
        t["mm.2.weight"] = (n_out, 4 * n_embd)
        t["mm.2.bias"] = (n_out,)
    elif projector == "mlp":
        t["v.class_embd"] = (n_embd,)
        t["v.position_embd.weight"] = (n_patches + 1, n_embd)
        t["v.pre_ln.weight"] = (n_embd,)
        t["v.pre_ln.bias"] = (n_embd,)
        t["mm.0.weight"] = (n_out, n_embd)
        t["mm.0.bias"] = (n_out,)
        t["mm.2.weight"] = (n_out, n_out)
        t["mm.2.bias"] = (n_out,)
    elif projector == "idefics3":
        t["v.position_embd.weight"] = (n_patches, n_embd)
        t["v.post_ln.weight"] = (n_embd,)
        t["v.post_ln.bias"] = (n_embd,)
        t["mm.model.fc.weight"] = (n_out, n_embd * scale_factor * scale_factor)
    else:
        raise ValueError(f"synthetic mmproj for {projector} not implemented")
    for i in range(n_layer):
        b = f"v.blk.{i}."
        for p in ("attn_q", "attn_k", "attn_v", "attn_out"):
            t[b + p + ".weight"] = (n_embd, n_embd)
            t[b + p + ".bias"] = (n_embd,)
        for n in ("ln1", "ln2"):
            t[b + n + ".weight"] = (n_embd,)
            t[b + n + ".bias"] = (n_embd,)
        t[b + "ffn_up.weight"] = (n_ff, n_embd)
        t[b + "ffn_up.bias"] = (n_ff,)
        t[b + "ffn_down.weight"] = (n_embd, n_ff)
        t[b + "ffn_down.bias"] = (n_embd,)
    return t


def write_mmproj(path: str | Path, projector: str = "mlp", n_layer: int = 2, n_embd: int = 32, n_head: int = 4,
                 n_ff: int = 64, image_size: int = 32, patch: int = 8, n_out: int = 64, seed: int = 1,
                 dtype: type = np.float32, scale_factor: int = 2, preproc_image_size: int | None = None) -> Path:
    """A random-weight vision encoder + projector (clip.projector_type = projector)."""
    path = Path(path)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), "clip")
    w.add_name(f"synthetic-mmproj-{projector}")
    w.add_file_type(1 if dtype == np.float16 else 0)
    w.add_string("clip.projector_type", projector)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.projection_dim", n_out)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    if projector == "idefics3":
        w.add_uint32("clip.vision.projector.scale_factor", scale_factor)
    if preproc_image_size is not None:
        w.add_uint32("clip.vision.preproc_image_size", preproc_image_size)
    n_patches = (image_size // patch) ** 2
    _write_tensors(w, mmproj_tensors(projector, n_layer, n_embd, n_ff, patch, n_patches, n_out, scale_factor), rng,
                   dtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def main() -> None:
    """Regenerate the tiny placeholder model shipped in the package (python/corehead/models/tiny)."""
    out = Path(__file__).resolve().parent.parent / "python" / "corehead" / "models" / "tiny"
    out.mkdir(parents=True, exist_ok=True)
    write_text_model(out / "tiny-llama-f16.gguf", arch="llama", dtype=np.float16, seed=0)
    write_mmproj(out / "mmproj-tiny-llama-f16.gguf", projector="mlp", n_out=64, dtype=np.float16, seed=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
