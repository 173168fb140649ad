"""Seed corpus for tools/fuzz/fuzz_video.py: tiny valid clips made with PyAV (nothing committed).

    python -m tools.fuzz.video_seeds OUT_DIR

One clip per codec / container PyAV's FFmpeg can write here (h264 in mp4, vp9 in webm, mjpeg in
avi, gif, mpeg4 in mkv), 4-6 frames of 32x24 or so, each prefixed with fuzz_video.py's 3-byte
header (fps, max_frames, suffix selectors) in a few combinations.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

# (codec, container format, suffix index in fuzz_video.SUFFIXES, pixel format, frame rate)
CLIPS = [("libx264", "mp4", 0, "yuv420p", 10), ("libvpx-vp9", "webm", 1, "yuv420p", 8),
         ("mjpeg", "avi", 2, "yuvj420p", 5), ("gif", "gif", 3, "rgb8", 5), ("mpeg4", "matroska", 4, "yuv420p", 12)]


def clip(codec: str, fmt: str, pix: str, rate: int, n: int = 5, w: int = 32, h: int = 24) -> bytes | None:
    import av

    if codec not in av.codecs_available:
        return None
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        s = out.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, pix
        rng = np.random.default_rng(0)
        for i in range(n):
            a = np.zeros((h, w, 3), np.uint8)
            a[:, : (i + 1) * w // n] = (40 * i, 255 - 40 * i, 128)
            a[::5] = rng.integers(0, 255, (1, w, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(a, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return buf.getvalue()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    total = 0
    for codec, fmt, sfx, pix, rate in CLIPS:
        data = clip(codec, fmt, pix, rate)
        if data is None:
            print(f"skip {codec}: not in this PyAV build")
            continue
        for fps_sel, mf_sel in [(0, 0), (1, 3), (4, 1)]:  # defaults; 2 fps / 3 frames; 30 fps / 1 frame
            (out / f"{fmt}-{codec}-{fps_sel}-{mf_sel}").write_bytes(bytes([fps_sel, mf_sel, sfx]) + data)
            total += len(data) + 3
    print(f"{len(list(out.iterdir()))} seeds, {total} bytes in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
