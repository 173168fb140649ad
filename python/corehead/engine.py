"""The Engine: a GGUF language model (and optional mmproj vision projector) loaded in ggml."""

from __future__ import annotations

import os
from typing import Any

from corehead import _core
from corehead._paths import as_path


class Engine:
    """A quantized (multimodal) LLM loaded from GGUF files.

    Args:
        model: path to the language-model GGUF (the file you would give llama.cpp's ``-m``).
        mmproj: path to the vision projector GGUF (llama.cpp's ``--mmproj``), or None.
        n_threads: CPU threads; None picks the number of physical cores.
        n_ctx: context window in tokens.
        backend: "auto" (a GPU when compiled in, else CPU), "cpu", "cuda" or "metal".

    Weights stay in their stored (quantized) type. Use as a context manager or call
    :meth:`close` to free memory right away; garbage collection frees it too.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        mmproj: str | os.PathLike | None = None,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        backend: str = "auto",
    ) -> None:
        model_path = as_path(model, "model")
        mmproj_path = as_path(mmproj, "mmproj") if mmproj is not None else ""
        if n_threads is not None and (isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1):
            raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int):
            raise TypeError(f"n_ctx must be an int, got {type(n_ctx).__name__}")
        if not isinstance(backend, str):
            raise TypeError(f"backend must be a str, got {type(backend).__name__}")
        self._core: _core.Engine | None = _core.Engine(
            model_path, mmproj_path, n_threads or 0, n_ctx, backend
        )

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Free the weights and backends now. The engine is unusable afterwards."""
        self._core = None

    @property
    def closed(self) -> bool:
        return self._core is None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _native(self) -> _core.Engine:
        if self._core is None:
            raise RuntimeError("this Engine is closed")
        return self._core

    # -- facts ---------------------------------------------------------------------------------
    @property
    def info(self) -> dict:
        """Architecture and sizes: arch, n_layer, n_head, n_head_kv, n_embd, n_vocab, n_ctx_train,
        file_type, …, plus ``vision`` (a dict for the mmproj, or None) and runtime settings."""
        core = self._native()
        info = dict(core.text_info)
        info["vision"] = core.vision_info
        info.update(backend=core.backend, n_threads=core.n_threads, n_ctx=core.n_ctx, weight_bytes=core.weight_bytes)
        return info

    def __repr__(self) -> str:
        if self._core is None:
            return "Engine(closed)"
        i = self._core.text_info
        v = self._core.vision_info
        vis = f", vision={v['projector']}" if v else ""
        return f"Engine({i['arch']}, {i['n_layer']} layers x {i['n_head']} heads, {i['file_type']}{vis})"


def inspect(model: str | os.PathLike | None = None, mmproj: str | os.PathLike | None = None) -> dict:
    """Validate GGUF files without loading weights and return their facts.

    Works on tokenizer-only files (llama.cpp's ``ggml-vocab-*.gguf``) too. Returns
    ``{"model": dict | None, "vision": dict | None}``.
    """
    if model is None and mmproj is None:
        raise ValueError("pass a model path, an mmproj path, or both")
    out: dict = {"model": None, "vision": None}
    if model is not None:
        out["model"] = _core.inspect_model(as_path(model, "model"))
    if mmproj is not None:
        out["vision"] = _core.inspect_mmproj(as_path(mmproj, "mmproj"))
    return out
