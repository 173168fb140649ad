"""Memory an Engine will need, predicted from the GGUF files before anything is loaded.

    >>> corehead.memory_estimate("model.gguf", mmproj="mmproj.gguf", n_ctx=8192)
    {'weights': ..., 'kv': ..., 'compute': ..., 'total': ..., ...}

- ``weights``: the tensor data of the model (and mmproj) files. The engine keeps weights in their
  stored (quantized) type, so this is the tensor-data region of each file; it matches
  ``Engine.info['weight_bytes']`` to within 1% (buffer alignment).
- ``kv``: the dense KV cache, ``n_layer * n_ctx * n_head_kv * (head_dim_k + head_dim_v)`` elements
  of ``kv_type``; equal to what the engine allocates.
- ``compute``: an approximation of the scheduler's compute buffers: the larger of one prefill
  batch (activations of ``n_batch`` tokens, the attention mask, logits of every row) and, with
  an mmproj, one vision-encoder pass at the tower's input size (its attention scores are
  materialized). Buffers are reused between layers, so the peak is that of the largest single
  layer; the estimate errs on the large side. (Qwen2-VL's dynamic resolution can take more for
  large images: the encoder's cost grows with the image's patch count.)
- ``total``: the sum of the three. Process overhead (the Python interpreter, ggml's thread
  pool, the tokenizer tables, tens of MB) comes on top.
"""

from __future__ import annotations

import os
import struct

from corehead import _core
from corehead._paths import as_path

_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # gguf value type -> bytes
_STRING, _ARRAY = 8, 9


def _data_region(path: str) -> tuple[int, int]:
    """(offset, size) of the tensor-data region of a GGUF file: everything after the header, the
    metadata and the tensor infos, aligned to general.alignment. Only the layout is read here; the
    native inspect_* call before this one has validated the file."""
    with open(path, "rb") as f:
        buf = f.read(1 << 16)
        pos = 0

        def need(n: int) -> None:
            nonlocal buf
            while pos + n > len(buf):
                more = f.read(max(1 << 16, pos + n - len(buf)))
                if not more:
                    raise _core.ModelError(f"{path}: truncated GGUF metadata")
                buf += more

        def u32() -> int:
            nonlocal pos
            need(4)
            pos += 4
            return struct.unpack_from("<I", buf, pos - 4)[0]

        def u64() -> int:
            nonlocal pos
            need(8)
            pos += 8
            return struct.unpack_from("<Q", buf, pos - 8)[0]

        def skip(n: int) -> None:
            nonlocal pos
            need(n)
            pos += n

        def string() -> bytes:
            n = u64()
            skip(n)
            return buf[pos - n:pos]

        if u32() != 0x46554747:  # "GGUF"
            raise _core.ModelError(f"{path}: not a GGUF file")
        u32()  # version (2 or 3: the native check accepts nothing else)
        n_tensors, n_kv = u64(), u64()
        alignment = 32
        for _ in range(n_kv):
            key = string()
            vtype = u32()
            if vtype == _ARRAY:
                etype, n = u32(), u64()
                if etype == _STRING:
                    for _ in range(n):
                        string()
                else:
                    skip(_SCALAR[etype] * n)
            elif vtype == _STRING:
                string()
            else:
                if key == b"general.alignment" and vtype == 4:
                    alignment = struct.unpack_from("<I", buf, pos)[0] if pos + 4 <= len(buf) else 32
                skip(_SCALAR[vtype])
        for _ in range(n_tensors):
            string()
            n_dims = u32()
            skip(8 * n_dims + 4 + 8)
        offset = (pos + alignment - 1) // alignment * alignment
    return offset, os.path.getsize(path) - offset


def _elem_size(kv_type: str, file_type: str) -> int:
    if kv_type == "auto":
        return 4 if file_type == "F32" else 2
    if kv_type in ("f16", "f32"):
        return 2 if kv_type == "f16" else 4
    raise ValueError(f"kv_type must be 'auto', 'f16' or 'f32' (got {kv_type!r})")


def _check_int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi} (got {value})")
    return value


def memory_estimate(model: str | os.PathLike, mmproj: str | os.PathLike | None = None, n_ctx: int = 4096,
                    kv_type: str = "auto", n_batch: int = 512) -> dict:
    """Bytes an ``Engine(model, mmproj, n_ctx=..., kv_type=..., n_batch=...)`` will hold, from the
    files alone (nothing is loaded; both files are validated as the Engine would).

    Returns a dict: ``weights``, ``kv``, ``compute``, ``total`` (bytes) and the facts used
    (``n_ctx``, ``kv_type``, ``kv_element_bytes``, ``text_weights``, ``vision_weights``).
    """
    model_path = as_path(model, "model")
    mmproj_path = as_path(mmproj, "mmproj") if mmproj is not None else None
    n_ctx = _check_int(n_ctx, "n_ctx", 16, 1 << 24)
    n_batch = _check_int(n_batch, "n_batch", 1, 65536)
    if not isinstance(kv_type, str):
        raise TypeError(f"kv_type must be a str, got {type(kv_type).__name__}")

    t = _core.inspect_model(model_path)
    if t["vocab_only"]:
        raise _core.ModelError(f"{model_path}: this GGUF holds only a tokenizer (no weights)")
    elem = _elem_size(kv_type, t["file_type"])
    text_weights = _data_region(model_path)[1]
    head_dim = t["head_dim"]
    kv = t["n_layer"] * n_ctx * t["n_head_kv"] * 2 * head_dim * elem

    # One prefill batch: the residual stream and its norms, q/k/v/o, the FFN (gate, up and their
    # product), all f32; the attention mask (flash attention materializes no score matrix); the
    # logits of every row (the all_positions case; one row otherwise).
    n_tok = min(n_batch, n_ctx)
    q_dim = t["n_head"] * head_dim
    per_token = 4 * (4 * t["n_embd"] + 3 * q_dim + 2 * t["n_head_kv"] * head_dim + 3 * t["n_ff"])
    mask = 4 * n_tok * n_ctx
    compute = n_tok * per_token + mask + 4 * t["n_vocab"] * n_tok

    vision_weights = 0
    if mmproj_path is not None:
        v = _core.inspect_mmproj(mmproj_path)
        vision_weights = _data_region(mmproj_path)[1]
        n_patch = (v["image_size"] // v["patch_size"]) ** 2 + 1 if v["patch_size"] else 0
        per_patch = 4 * (6 * v["n_embd"] + 2 * v["n_ff"] + v["n_out"])
        scores = 4 * v["n_head"] * n_patch * n_patch  # the encoder's attention matrix
        compute = max(compute, n_patch * per_patch + scores)

    weights = text_weights + vision_weights
    return {
        "weights": weights,
        "kv": kv,
        "compute": compute,
        "total": weights + kv + compute,
        "text_weights": text_weights,
        "vision_weights": vision_weights,
        "n_ctx": n_ctx,
        "kv_type": kv_type,
        "kv_element_bytes": elem,
    }
