"""Probes: an image, a question about it, the answer, and where in the image the answer is.

JSONL, one probe per line: ``{"image": "img/0.png", "question": "...", "answer": "...",
"bbox": [x0, y0, x1, y1]}`` (image paths are relative to the file; ``bbox`` may also be a list
of boxes; optional ``choices``). ``"video": "clip.mp4"`` (optional ``"fps"``, ``"max_frames"``)
instead of ``"image"`` makes a video probe, whose ``bbox`` (frame pixels) marks the same region
in every frame. A probe may instead carry a target text span
(``"span": [start, end]`` character offsets into the question) for text-only retrieval heads.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Probe:
    """One question about one image (or about a text span).

    image: a path, a PIL image or an HxWx3 uint8 array (None for a text-only probe).
    video: instead of an image, a video (a path, a (T, H, W, 3) uint8 array or a list of frames),
        sampled at `fps` frames per second, at most `max_frames` (see :mod:`corehead.videos`); its
        bbox / mask, in frame pixels, marks the same region in every frame (per-frame boxes are not
        supported yet).
    bbox: one box [x0, y0, x1, y1] or a list of boxes, in original-image pixels.
    mask: an HxW boolean array instead of boxes.
    span: (start, end) character offsets of the target text inside `question`.
    prompt: the full prompt (with the image marker) to use verbatim instead of the chat template.
    """

    image: Any = None
    question: str = ""
    answer: str | None = None
    bbox: Any = None
    mask: Any = None
    choices: list[str] | None = None
    span: tuple[int, int] | None = None
    prompt: str | None = None
    meta: dict = field(default_factory=dict)
    video: Any = None
    fps: float | None = None
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.image is not None and self.video is not None:
            raise ValueError("a Probe takes an image or a video, not both")
        if not isinstance(self.question, str):
            raise TypeError("Probe.question must be a str")
        if self.answer is not None and not isinstance(self.answer, str):
            raise TypeError("Probe.answer must be a str or None")
        if self.choices is not None and (isinstance(self.choices, str) or
                                         not all(isinstance(c, str) for c in self.choices)):
            raise TypeError("Probe.choices must be a list of str")
        if self.span is not None:
            s, e = self.span
            if not (0 <= s < e <= len(self.question)):
                raise ValueError(f"Probe.span {self.span} is not inside the question ({len(self.question)} chars)")

    def boxes(self) -> np.ndarray:
        """The target boxes as a float64 [n, 4] array ([] when the probe has none)."""
        if self.bbox is None:
            return np.zeros((0, 4))
        b = np.asarray(self.bbox, dtype=np.float64)
        if b.ndim == 1:
            b = b[None]
        if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
            raise ValueError(f"bbox must be [x0, y0, x1, y1] or a list of them, got {self.bbox!r}")
        return b


def load_probes(path: str | os.PathLike) -> list[Probe]:
    """Read probes from JSONL; image paths are resolved relative to the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"probe file not found: {path}")
    probes = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e})") from None
            if not isinstance(d, dict) or "question" not in d:
                raise ValueError(f"{path}:{lineno}: each line must be an object with at least 'question'")
            image, video = d.get("image"), d.get("video")
            if isinstance(image, str):
                image = str((path.parent / image).resolve())
            if isinstance(video, str):
                video = str((path.parent / video).resolve())
            try:
                probes.append(Probe(image=image, question=d["question"], answer=d.get("answer"), bbox=d.get("bbox"),
                                    choices=d.get("choices"), span=tuple(d["span"]) if "span" in d else None,
                                    prompt=d.get("prompt"), meta={"line": lineno}, video=video, fps=d.get("fps"),
                                    max_frames=d.get("max_frames")))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
    if not probes:
        raise ValueError(f"{path}: no probes")
    return probes


def probe_media(eng, probe: Probe) -> list:
    """The probe's image or video, loaded once, as the media list the Engine calls take with
    image markers (a video becomes a native clip): [] for a text probe."""
    if probe.video is not None:
        return eng.load_videos([probe.video], fps=probe.fps, max_frames=probe.max_frames)
    if probe.image is not None:
        from corehead.images import load_images

        return load_images([probe.image])
    return []


def media_size(item) -> tuple[int, int]:
    """(height, width) of an image array or of a video's frames."""
    if isinstance(item, np.ndarray):
        return int(item.shape[0]), int(item.shape[1])
    return int(item.height), int(item.width)


def clip_boxes(boxes: np.ndarray, width: int, height: int, what: str = "bbox") -> np.ndarray:
    """Boxes clipped to the image; inverted or empty boxes raise, partly outside ones warn."""
    if len(boxes) == 0:
        return boxes
    if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
        raise ValueError(f"{what} has an inverted or empty box (need x0 < x1 and y0 < y1): {boxes.tolist()}")
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    if (clipped[:, 2] <= clipped[:, 0]).any() or (clipped[:, 3] <= clipped[:, 1]).any():
        raise ValueError(f"{what} {boxes.tolist()} lies outside the {width}x{height} image")
    if not np.array_equal(clipped, boxes):
        warnings.warn(f"{what} {boxes.tolist()} extends past the {width}x{height} image; clipped", stacklevel=3)
    return clipped


def box_relevance(token_boxes: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """r_j = area(token_j ∩ union(targets)) / area(token_j), exactly (no rasterization).

    The union of several target boxes is measured by sweeping the x-edges: within each x-slab the
    covered y-length is the union of the boxes' y-intervals.
    """
    tb = np.asarray(token_boxes, dtype=np.float64)
    r = np.zeros(len(tb))
    if len(targets) == 0:
        return r
    if len(targets) == 1:
        # One box (the usual probe): the overlap is a rectangle, for all tokens at once.
        x0, y0, x1, y1 = np.asarray(targets[0], dtype=np.float64)
        w = np.clip(np.minimum(tb[:, 2], x1) - np.maximum(tb[:, 0], x0), 0, None)
        h = np.clip(np.minimum(tb[:, 3], y1) - np.maximum(tb[:, 1], y0), 0, None)
        area = (tb[:, 2] - tb[:, 0]) * (tb[:, 3] - tb[:, 1])
        np.divide(w * h, area, out=r, where=area > 0)
        return r
    for j, (x0, y0, x1, y1) in enumerate(tb):
        area = (x1 - x0) * (y1 - y0)
        if area <= 0:
            continue
        # Targets clipped to this token.
        cx0 = np.maximum(targets[:, 0], x0)
        cx1 = np.minimum(targets[:, 2], x1)
        cy0 = np.maximum(targets[:, 1], y0)
        cy1 = np.minimum(targets[:, 3], y1)
        keep = (cx1 > cx0) & (cy1 > cy0)
        if not keep.any():
            continue
        cx0, cx1, cy0, cy1 = cx0[keep], cx1[keep], cy0[keep], cy1[keep]
        xs = np.unique(np.concatenate([cx0, cx1]))
        covered = 0.0
        for a, b in zip(xs[:-1], xs[1:]):
            inside = (cx0 <= a) & (cx1 >= b)
            if not inside.any():
                continue
            iv = sorted(zip(cy0[inside], cy1[inside]))
            length, cur0, cur1 = 0.0, iv[0][0], iv[0][1]
            for s, e in iv[1:]:
                if s > cur1:
                    length += cur1 - cur0
                    cur0, cur1 = s, e
                else:
                    cur1 = max(cur1, e)
            covered += (b - a) * (length + cur1 - cur0)
        r[j] = covered / area
    return r


def mask_relevance(token_boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """r_j = fraction of token_j's pixels inside a boolean HxW mask (pixel centers)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be a 2-D boolean array, got shape {m.shape}")
    integral = np.pad(m.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = m.shape
    r = np.zeros(len(token_boxes))
    for j, (x0, y0, x1, y1) in enumerate(np.asarray(token_boxes, dtype=np.float64)):
        # Pixels whose centers lie in the token rectangle.
        c0, c1 = int(np.clip(np.ceil(x0 - 0.5), 0, w)), int(np.clip(np.ceil(x1 - 0.5), 0, w))
        r0, r1 = int(np.clip(np.ceil(y0 - 0.5), 0, h)), int(np.clip(np.ceil(y1 - 0.5), 0, h))
        n = (c1 - c0) * (r1 - r0)
        if n > 0:
            r[j] = (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) / n
    return r
