"""Plots: attention of one head drawn over the image's visual tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from corehead.engine import Engine
    from corehead.probes import Probe


def attention_overlay(eng: Engine, probe: Probe, layer: int, head: int, path: str | Path,
                      query: str = "last", alpha: float = 0.55) -> np.ndarray:
    """Draw head (layer, head)'s attention over the probe image's visual tokens on the image,
    each token's mass spread over its rectangle (:meth:`Engine.visual_token_boxes`), with the
    probe's target box outlined. query: "last" (last prompt position) or "answer" (mean over the
    positions that predict the answer). Returns the per-token attention [n_visual]; writes `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corehead.images import load_images
    from corehead.ram import probe_prompt

    if probe.image is None:
        raise ValueError("attention_overlay needs a probe with an image (video probes are not supported yet)")
    (img,) = load_images([probe.image])
    prompt = probe_prompt(eng, probe)
    n_prompt = len(eng.multimodal_tokens(prompt, [img]))
    if query == "answer":
        if not probe.answer:
            raise ValueError("query='answer' needs a probe with an answer")
        prompt = prompt + probe.answer
        n = len(eng.multimodal_tokens(prompt, [img]))
        positions = list(range(n_prompt - 1, n - 1))
    elif query == "last":
        positions = [n_prompt - 1]
    else:
        raise ValueError(f"query must be 'last' or 'answer', got {query!r}")
    rows = eng.attention(prompt, images=[img], positions=positions, layers=[layer])[0, head].mean(0)
    vis = np.asarray(eng.visual_token_positions(prompt, [img]))
    boxes = np.asarray(eng.visual_token_boxes(img))
    mass = rows[vis]
    h, w = img.shape[:2]
    heat = np.zeros((h, w))
    # Spread each token's mass over its rectangle; overlapping views (e.g. a global view) add up.
    for m, (x0, y0, x1, y1) in zip(mass, boxes):
        heat[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] += m / max((x1 - x0) * (y1 - y0), 1e-9)
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1)))
    ax.imshow(img)
    ax.imshow(heat, cmap="inferno", alpha=alpha, extent=(0, w, h, 0))
    for x0, y0, x1, y1 in probe.boxes():
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="cyan", linewidth=2))
    ax.set_title(f"layer {layer} head {head}: {mass.sum():.2f} of the attention on the image")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return mass
