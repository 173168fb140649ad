"""Video inputs: a path, a (T, H, W, 3) uint8 array or a list of PIL images -> a native ``_core.Video``.

A video reaches the model as the frames it sees and when they were taken. A file is decoded with
PyAV (``pip install 'corehead[video]'``) and sampled uniformly at ``fps`` frames per second
(transformers' ``sample_frames``: ``arange(0, total, total / n)`` with ``n = total / native_fps
* fps`` frames); an array or a list of images is taken as frames already sampled at ``fps``.
``max_frames`` caps the count (sampled uniformly the same way). Each frame's timestamp is its
index in the source over the source's frame rate, and the sampler's rate (frames kept per
second) goes with them: Qwen2.5-VL spaces its temporal M-RoPE positions by it, Qwen3-VL writes
the timestamps into the prompt (``<0.5 seconds>``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from corehead import _core
from corehead.images import MAX_PIXELS, load_image

#: Frames sampled per second from a video file when `fps` is not given (qwen-vl-utils' and
#: Qwen3-VL's video processor default), and the rate assumed for frames passed as arrays.
DEFAULT_FPS = 2.0
#: The most frames one video may give (transformers' Qwen-VL video processors' max_frames).
DEFAULT_MAX_FRAMES = 768


def check_video_options(fps: float | None, max_frames: int | None) -> tuple[float | None, int]:
    """`fps` (> 0 or None) and `max_frames` (an int > 0 or None), checked."""
    if fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
            raise TypeError(f"fps must be a number, got {type(fps).__name__}")
        if not math.isfinite(float(fps)) or float(fps) <= 0:
            raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
        fps = float(fps)
    if max_frames is None:
        max_frames = DEFAULT_MAX_FRAMES
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)):
        raise TypeError(f"max_frames must be an int, got {type(max_frames).__name__}")
    if max_frames <= 0:
        raise ValueError(f"max_frames must be a positive int, got {max_frames!r}")
    return fps, int(max_frames)


def sample_indices(total: int, n: int) -> np.ndarray:
    """`n` of `total` frame indices, uniformly: transformers' ``arange(0, total, total / n).int()``."""
    return np.floor(np.arange(n, dtype=np.float64) * (total / n)).astype(np.int64)


def _frames_from_list(frames) -> np.ndarray:
    arrays = [load_image(f) for f in frames]
    if not arrays:
        raise ValueError("the video has no frames")
    if any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError("the frames of a video must all have one size; got "
                         f"{sorted({a.shape[:2] for a in arrays})} (H, W)")
    return np.stack(arrays)


def _from_array(a: np.ndarray) -> np.ndarray:
    if a.ndim != 4 or a.shape[3] != 3:
        raise ValueError(f"a video array must be (T, H, W, 3) RGB; got shape {a.shape}")
    if a.dtype != np.uint8:
        raise TypeError(f"video arrays must be uint8, got {a.dtype}")
    if a.shape[0] == 0:
        raise ValueError("the video has no frames (a (0, H, W, 3) array)")
    if a.shape[1] * a.shape[2] == 0 or a.shape[1] * a.shape[2] > MAX_PIXELS:
        raise ValueError(f"the video's frames are {a.shape[2]}x{a.shape[1]} pixels: each must be non-empty and at "
                         f"most {MAX_PIXELS / 1e6:.0f} megapixels")
    return np.ascontiguousarray(a)


def _decode(path: Path, fps: float, max_frames: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Frames of the file sampled at `fps` (at most max_frames): (frames, source indices,
    source frame rate, sampler rate). The file is decoded twice: once to count its frames (the
    containers' counts are not always right), once keeping only the sampled ones, so a long video
    never sits in memory whole."""
    try:
        import av
    except ImportError as e:
        raise ImportError("reading video files needs PyAV: pip install 'corehead[video]'") from e

    def plan(total: int, native: float) -> np.ndarray:
        n = int(math.floor(total / native * fps))  # transformers' sample_frames (no temporal rounding here)
        return sample_indices(total, max(1, min(n, total, max_frames)))

    def decode(keep: np.ndarray) -> tuple[list[np.ndarray], int, float]:
        with av.open(str(path), metadata_errors="replace") as container:  # non-UTF-8 tags (fuzz finding)
            if not container.streams.video:
                raise ValueError(f"the video {path} has no frames (no video stream)")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            native = float(rate) if rate else 0.0
            if not native > 0:
                raise ValueError(f"the video {path} gives no frame rate: decode it yourself and pass the frames "
                                 "with fps=")
            ctx = stream.codec_context
            if ctx is None:  # PyAV opens no decoder for a codec this FFmpeg build lacks (fuzz finding)
                raise ValueError(f"the video {path} uses a codec this FFmpeg build "
                                 "cannot decode: convert it (e.g. to H.264 or VP9) or pass the frames")
            w, h = ctx.width, ctx.height
            if w * h > MAX_PIXELS:
                raise ValueError(f"the video {path} has {w}x{h} frames: at most {MAX_PIXELS / 1e6:.0f} megapixels")
            wanted = set(keep.tolist())
            kept, count, size = [], 0, None
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    # The header's size is not a promise: a stream may change size mid-way.
                    fw, fh = frame.width, frame.height
                    if not 0 < fw * fh <= MAX_PIXELS:
                        raise ValueError(f"the video {path} has a {fw}x{fh} frame (#{i}): each must be non-empty "
                                         f"and at most {MAX_PIXELS / 1e6:.0f} megapixels")
                    if size is not None and (fw, fh) != size:
                        raise ValueError(f"the video {path} changes frame size ({size[0]}x{size[1]} to {fw}x{fh} at "
                                         f"frame #{i}): decode it yourself and pass frames of one size")
                    size = (fw, fh)
                    kept.append(frame.to_ndarray(format="rgb24"))
                count = i + 1
            return kept, count, native

    try:
        _, count, native = decode(np.zeros(0, np.int64))  # count the frames, keep none
        if count == 0:
            raise ValueError(f"the video {path} has no frames")
        idx = plan(count, native)
        frames, _, _ = decode(idx)
    except (av.FFmpegError, OSError) as e:
        raise ValueError(f"cannot decode the video {path}: {e}") from e
    if len(frames) != len(idx):
        raise ValueError(f"the video {path} decoded to a different number of frames on a second read")
    return np.stack(frames), idx, native, len(idx) / count * native


def load_video(video: Any, fps: float | None = None, max_frames: int | None = None) -> _core.Video:
    """`video` (a path, a (T, H, W, 3) uint8 array, a list of frames, or a ``_core.Video``) as
    the native clip the engine takes; see the module docstring for `fps` and `max_frames`."""
    fps, max_frames = check_video_options(fps, max_frames)
    if isinstance(video, _core.Video):
        return video
    if isinstance(video, (str, os.PathLike)):
        path = Path(video)
        if not path.is_file():
            raise FileNotFoundError(f"video file not found: {path}")
        frames, idx, native, rate = _decode(path, fps or DEFAULT_FPS, max_frames)
        return _core.Video(np.ascontiguousarray(frames), (idx / native).tolist(), rate)
    if isinstance(video, np.ndarray):
        frames = _from_array(video)
    elif isinstance(video, (list, tuple)):
        frames = _frames_from_list(video)
    else:
        raise TypeError("a video must be a path, a (T, H, W, 3) uint8 array or a list of frames (PIL images or "
                        f"arrays); got {type(video).__name__}")
    rate = fps or DEFAULT_FPS
    total = frames.shape[0]
    idx = sample_indices(total, min(total, max_frames))
    return _core.Video(np.ascontiguousarray(frames[idx]), (idx / rate).tolist(), len(idx) / total * rate)


def _is_frame(x: Any) -> bool:
    return type(x).__module__.startswith("PIL") or (isinstance(x, np.ndarray) and x.ndim == 3)


def load_videos(videos, fps: float | None = None, max_frames: int | None = None) -> list[_core.Video]:
    """`videos` (one video or a sequence of them) as native clips; [] for None or ()."""
    if videos is None:
        return []
    if isinstance(videos, (str, os.PathLike, np.ndarray, _core.Video)):
        videos = [videos]
    elif isinstance(videos, (list, tuple)) and videos and all(_is_frame(v) for v in videos):
        videos = [videos]  # a list of frames is one video
    return [load_video(v, fps=fps, max_frames=max_frames) for v in videos]
