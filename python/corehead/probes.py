"""Probes: an image, a question about it, the answer, and where in the image the answer is.

JSONL, one probe per line: ``{"image": "img/0.png", "question": "...", "answer": "...",
"bbox": [x0, y0, x1, y1]}`` (image paths are relative to the file; ``bbox`` may also be a list
of boxes; optional ``choices``). ``"video": "clip.mp4"`` (optional ``"fps"``, ``"max_frames"``)
instead of ``"image"`` makes a video probe: a plain ``bbox`` (frame pixels) marks the same region
in every frame; a spatio-temporal ``bbox`` gives boxes per sampled frame or per time span (see
:class:`Probe` and docs/ram.md "Spatio-temporal probes")::

    {"video": "clip.mp4", "fps": 2, "question": "Where is the ball?", "answer": " left",
     "bbox": [{"frame": 0, "bbox": [0, 0, 32, 32]}, {"t0": 1.0, "t1": 2.0, "bbox": [[8, 8, 40, 40]]}]}

or ``"bbox": {"0": [0, 0, 32, 32], "3": [[8, 8, 40, 40], [48, 0, 64, 16]]}`` (keys: sampled-frame
indices). A probe may instead carry a target text span
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

#: Seconds by which a time span's ends may miss a frame's timestamp and still cover it.
SPAN_SLACK = 1e-6


@dataclass
class Probe:
    """One question about one image (or about a text span).

    image: a path, a PIL image or an HxWx3 uint8 array (None for a text-only probe).
    video: instead of an image, a video (a path, a (T, H, W, 3) uint8 array or a list of frames),
        sampled at `fps` frames per second, at most `max_frames` (see :mod:`corehead.videos`); a
        plain bbox / mask, in frame pixels, marks the same region in every frame.
    bbox: one box [x0, y0, x1, y1] or a list of boxes, in original-image pixels. A video probe may
        give boxes per frame instead (frame pixels; frames without a box have zero relevance):
        ``{frame: box or [boxes]}`` keyed by sampled-frame index (0 .. n_frames - 1 of the clip
        the model sees, after fps / max_frames sampling), or a list of ``{"frame": k, "bbox": ...}``
        and ``{"t0": s, "t1": s, "bbox": ...}`` items, a time span covering the sampled frames whose
        timestamps t satisfy t0 <= t <= t1 (seconds, to 1 µs). Boxes given for one frame several times add
        up to their union. :meth:`frame_boxes` resolves them against a clip.
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
        if is_per_frame(self.bbox):
            if self.video is None:
                raise ValueError("a per-frame / per-time-span bbox needs a video probe (Probe(video=...)); an image "
                                 "probe takes one box [x0, y0, x1, y1] or a list of boxes")
            if self.mask is not None:
                raise ValueError("give a video probe either a per-frame bbox or a mask, not both")
            parse_frame_targets(self.bbox)  # shape errors now, not at ranking time

    @property
    def per_frame(self) -> bool:
        """True when `bbox` gives boxes per frame or per time span (a spatio-temporal target)."""
        return is_per_frame(self.bbox)

    def boxes(self) -> np.ndarray:
        """The target boxes as a float64 [n, 4] array ([] when the probe has none)."""
        if self.bbox is None:
            return np.zeros((0, 4))
        if self.per_frame:
            raise ValueError("this probe's bbox is per frame: use Probe.frame_boxes(n_frames, timestamps)")
        return as_boxes(self.bbox)

    def frame_boxes(self, n_frames: int, timestamps) -> list[np.ndarray]:
        """The target boxes of each of a clip's `n_frames` sampled frames (taken at `timestamps`,
        seconds): a list of float64 [n, 4] arrays, empty for frames without a box. A plain bbox
        gives every frame the same boxes. A frame index outside 0 .. n_frames - 1, or a time span
        that covers no sampled frame, raises a ValueError naming the valid range."""
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if len(ts) != n_frames:
            raise ValueError(f"{len(ts)} timestamps for {n_frames} frames")
        if not self.per_frame:
            b = self.boxes()
            return [b] * n_frames
        out: list[list[np.ndarray]] = [[] for _ in range(n_frames)]
        span = f"sampled at t = {ts[0]:g} .. {ts[-1]:g} s" if n_frames else "no frames"
        for target in parse_frame_targets(self.bbox):
            if target.frame is not None:
                if not 0 <= target.frame < n_frames:
                    raise ValueError(f"bbox frame {target.frame} does not exist: the clip has {n_frames} sampled "
                                     f"frame(s), indices 0 .. {n_frames - 1} ({span}; frame indices count the "
                                     "sampled frames, after fps / max_frames)")
                out[target.frame].append(target.boxes)
                continue
            # 1 µs of slack: a timestamp such as 1/3 s written out in JSON as 0.333333 still counts.
            inside = np.flatnonzero((ts >= target.t0 - SPAN_SLACK) & (ts <= target.t1 + SPAN_SLACK))
            if len(inside) == 0:
                where = ("outside the video" if target.t1 < ts[0] or target.t0 > ts[-1]
                         else "between sampled frames")
                raise ValueError(f"bbox time span t0={target.t0:g} .. t1={target.t1:g} s is {where}: it covers no "
                                 f"sampled frame (the clip's {n_frames} frame(s) are {span}: "
                                 f"{', '.join(f'{t:g}' for t in ts[:12])}{' ...' if n_frames > 12 else ''})")
            for k in inside:
                out[k].append(target.boxes)
        return [np.concatenate(b) if b else np.zeros((0, 4)) for b in out]


@dataclass(frozen=True)
class FrameTarget:
    """One item of a spatio-temporal bbox: boxes on one sampled frame, or on the frames of a time
    span [t0, t1] seconds (frame None)."""

    boxes: np.ndarray
    frame: int | None = None
    t0: float = 0.0
    t1: float = 0.0


def as_boxes(value: Any, what: str = "bbox") -> np.ndarray:
    """One box or a list of boxes as a float64 [n, 4] array."""
    try:
        b = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        b = np.zeros((0, 0))
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or len(b) == 0 or not np.isfinite(b).all():
        raise ValueError(f"{what} must be [x0, y0, x1, y1] or a list of them, got {value!r}")
    return b


def is_per_frame(bbox: Any) -> bool:
    """A dict keyed by frame, or a list of {"frame" | "t0"/"t1", "bbox"} items."""
    return isinstance(bbox, dict) or (isinstance(bbox, (list, tuple)) and len(bbox) > 0 and
                                      any(isinstance(b, dict) for b in bbox))


def _frame_index(key: Any) -> int:
    # JSON object keys are strings: "3" means frame 3.
    if isinstance(key, str) and key.strip().lstrip("+").isdigit():
        return int(key)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if key < 0:
            raise ValueError(f"bbox frame {key} is negative: frames are sampled-frame indices 0, 1, ...")
        return int(key)
    raise ValueError(f"bbox frame keys must be sampled-frame indices (ints >= 0), got {key!r}")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"bbox time span {what} must be a number of seconds, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"bbox time span {what} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def parse_frame_targets(bbox: Any) -> list[FrameTarget]:
    """A spatio-temporal bbox (see :class:`Probe`) as FrameTargets, its shape checked."""
    if isinstance(bbox, dict):
        if not bbox:
            raise ValueError("a per-frame bbox needs at least one frame")
        return [FrameTarget(as_boxes(b, f"bbox of frame {k!r}"), frame=_frame_index(k)) for k, b in bbox.items()]
    out = []
    for i, item in enumerate(bbox):
        if not isinstance(item, dict):
            raise ValueError(f"bbox item {i} is {item!r}: a per-frame bbox is a list of {{\"frame\": k, \"bbox\": "
                             "[...]} / {\"t0\": s, \"t1\": s, \"bbox\": [...]} objects")
        keys = set(item)
        if "bbox" not in keys or not (keys - {"bbox"}) or not ({"frame"} == keys - {"bbox"} or
                                                                 {"t0", "t1"} == keys - {"bbox"}):
            raise ValueError(f"bbox item {i} must have \"bbox\" and either \"frame\" or both \"t0\" and \"t1\", "
                             f"got keys {sorted(keys)}")
        boxes = as_boxes(item["bbox"], f"bbox item {i}'s bbox")
        if "frame" in item:
            out.append(FrameTarget(boxes, frame=_frame_index(item["frame"])))
            continue
        t0, t1 = _seconds(item["t0"], "t0"), _seconds(item["t1"], "t1")
        if t1 < t0:
            raise ValueError(f"bbox item {i}: the time span ends before it starts (t0={t0:g} > t1={t1:g})")
        out.append(FrameTarget(boxes, t0=t0, t1=t1))
    return out


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
