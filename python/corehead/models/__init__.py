"""Models embedded in the package.

`toy/` holds the trained toy VLM (the default once present); `tiny/` a random-weight
placeholder with a real llama + LLaVA-mlp layout (regenerate with python -m tools.fixtures.synthetic_gguf).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def default_model() -> tuple[Path, Path | None]:
    """(model, mmproj) paths of the embedded default model."""
    toy = sorted((HERE / "toy").glob("toy-vlm*.gguf")) if (HERE / "toy").is_dir() else []
    toy_mmproj = sorted((HERE / "toy").glob("mmproj-toy-vlm*.gguf")) if (HERE / "toy").is_dir() else []
    if toy and toy_mmproj:
        return toy[0], toy_mmproj[0]
    return HERE / "tiny" / "tiny-llama-f16.gguf", HERE / "tiny" / "mmproj-tiny-llama-f16.gguf"
