"""Memory an Engine will need, predicted from the GGUF files before anything is loaded.

    >>> corehead.memory_estimate("model.gguf", mmproj="mmproj.gguf", n_ctx=8192)
    {'weights': ..., 'kv': ..., 'compute': ..., 'total': ..., ...}

- ``weights``: the tensor data of the model (and mmproj) files. The engine keeps weights in their
  stored (quantized) type, so this is the tensor-data region of each file; it matches
  ``Engine.info['weight_bytes']`` to within 1% (buffer alignment).
- ``kv``: the dense KV cache, ``n_ctx * n_head_kv * (head_dim_k + head_dim_v)`` elements of
  ``kv_type`` per layer that holds K/V, with that layer's head size: not a hybrid model's recurrent
  layers (qwen35), nor the layers that read an earlier layer's K/V (KV sharing, Gemma 4); equal
  to what the engine allocates.
- ``recurrent_state``: a hybrid model's (qwen35) Gated DeltaNet state, f32, whatever ``n_ctx``.
- ``compute``: an approximation of the scheduler's compute buffers: the larger of one prefill
  batch (activations of ``n_batch`` tokens, the attention mask, logits of every row) and, with
  an mmproj, one vision-encoder pass over the largest view its preprocessing makes (its
  attention scores are materialized): the trained input for fixed-size encoders, the
  ``image_max_pixels`` budget for Qwen-VL's dynamic resolution. Buffers are reused between
  layers, so the peak is that of the largest single layer; the estimate errs on the large side.

Every number comes from the native GGUF reader (``inspect_model`` / ``inspect_mmproj`` for the
hyper-parameters, ``gguf_summary`` for the tensor-data region, ``largest_vision_input`` for the
encoder's input): the files are parsed in one place.
- ``total``: the sum of those. Process overhead (the Python interpreter, ggml's thread
  pool, the tokenizer tables, tens of MB) comes on top.
"""

from __future__ import annotations

import os
from typing import Any

from corehead import _core
from corehead._paths import as_path


def _elem_size(kv_type: str, file_type: str) -> int:
    if kv_type == "auto":
        return 4 if file_type == "F32" else 2
    if kv_type in ("f16", "f32"):
        return 2 if kv_type == "f16" else 4
    raise ValueError(f"kv_type must be 'auto', 'f16' or 'f32' (got {kv_type!r})")


def _check_int(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi} (got {value})")
    return value


def memory_estimate(model: str | os.PathLike, mmproj: str | os.PathLike | None = None, n_ctx: int = 4096,
                    kv_type: str = "auto", n_batch: int = 512) -> dict[str, Any]:
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
    if t.vocab_only:
        raise _core.ModelError(f"{model_path}: this GGUF holds only a tokenizer (no weights)")
    elem = _elem_size(kv_type, t.file_type)
    text_weights = _core.gguf_summary(model_path).data_size  # the tensor-data region, as the engine loads it
    head_dim = t.head_dim
    # Every layer holding a KV cache (not those that read another layer's: KV sharing, nor a hybrid
    # model's recurrent layers), each with its own head size.
    dims = t.layer_head_dims or [head_dim] * t.n_layer
    sources = t.kv_source_layers or list(range(t.n_layer))
    attention = set(t.attention_layers or range(t.n_layer))
    kv = n_ctx * t.n_head_kv * 2 * elem * sum(d for layer, d in enumerate(dims)
                                               if sources[layer] == layer and layer in attention)
    state = t.recurrent_state_bytes

    # One prefill batch: the residual stream and its norms, q/k/v/o, the FFN (gate, up and their
    # product), all f32; the attention mask (flash attention materializes no score matrix); the
    # logits of every row (the all_positions case; one row otherwise).
    n_tok = min(n_batch, n_ctx)
    q_dim = t.n_head * head_dim
    per_token = 4 * (4 * t.n_embd + 3 * q_dim + 2 * t.n_head_kv * head_dim + 3 * t.n_ff)
    mask = 4 * n_tok * n_ctx
    compute = n_tok * per_token + mask + 4 * t.n_vocab * n_tok

    vision_weights = 0
    if mmproj_path is not None:
        v = _core.inspect_mmproj(mmproj_path)
        vision_weights = _core.gguf_summary(mmproj_path).data_size
        # The largest single encoder input its preprocessing makes (views are encoded one at a
        # time): width x height patches, not necessarily square (Qwen-VL keeps the aspect ratio
        # up to image_max_pixels), plus a class token where the encoder has one.
        n_patch = _core.largest_vision_input(mmproj_path).n_patches
        per_patch = 4 * (6 * v.n_embd + 2 * v.n_ff + v.n_out)
        scores = 4 * v.n_head * n_patch * n_patch  # the encoder's attention matrix
        compute = max(compute, n_patch * per_patch + scores)

    weights = text_weights + vision_weights
    return {
        "weights": weights,
        "kv": kv,
        "compute": compute,
        "recurrent_state": state,
        "total": weights + kv + state + compute,
        "text_weights": text_weights,
        "vision_weights": vision_weights,
        "n_ctx": n_ctx,
        "kv_type": kv_type,
        "kv_element_bytes": elem,
    }
