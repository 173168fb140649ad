"""atheris target for corehead's video file path (``corehead.videos.load_video`` on a file).

    python tools/fuzz/fuzz_video.py -max_total_time=1800 -timeout=60 CORPUS_DIR   # libFuzzer flags
    python tools/fuzz/fuzz_video.py FILE                                           # replay one input

Input layout: byte 0 picks fps, byte 1 picks max_frames, byte 2 picks the file's suffix (PyAV /
FFmpeg probe the container from both the bytes and the name), the rest is the video file. The file
is written to a temporary path and decoded with PyAV through load_video. The only acceptable
failure is the documented one: a ``ValueError`` whose message is corehead's (it names the video or
the option), so a numpy / PyAV message leaking out, any other exception, a crash or a hang (the
-timeout flag) is a finding. A clip that loads must honour its contract: 1..max_frames frames of
one size within MAX_PIXELS, finite non-decreasing timestamps, a positive finite rate.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["corehead.videos", "corehead.images"]):
    from corehead.images import MAX_PIXELS
    from corehead.videos import load_video

FPS = [None, 2.0, 0.5, 1.0, 30.0, 1e-3, 1e6, 0.0, -1.0, float("nan"), float("inf"), 24.0]
MAX_FRAMES = [None, 1, 2, 3, 4, 8, 16, 64, 768, 0, -1, 10**9]
SUFFIXES = [".mp4", ".webm", ".avi", ".gif", ".mkv", ".mov", ".bin", ""]
TMP = os.environ.get("FUZZ_TMP", "/dev/shm" if os.path.isdir("/dev/shm") else None)


def _ours(e: ValueError) -> bool:
    # corehead's messages name the video ("the video ...", "a video ...") or the option.
    msg = str(e)
    return "video" in msg or msg.startswith(("fps must", "max_frames must"))


def one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    fps = FPS[data[0] % len(FPS)]
    max_frames = MAX_FRAMES[data[1] % len(MAX_FRAMES)]
    suffix = SUFFIXES[data[2] % len(SUFFIXES)]
    fd, path = tempfile.mkstemp(suffix=suffix, dir=TMP)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data[3:])
        try:
            v = load_video(path, fps=fps, max_frames=max_frames)
        except ValueError as e:
            if not _ours(e):
                raise
            return
        cap = 768 if max_frames is None else max_frames
        assert 1 <= v.n_frames <= cap, (v.n_frames, cap)
        assert 0 < v.width * v.height <= MAX_PIXELS, (v.width, v.height)
        ts = v.timestamps
        assert len(ts) == v.n_frames and all(math.isfinite(t) for t in ts), ts
        assert all(a <= b for a, b in zip(ts, ts[1:])), ts
        assert math.isfinite(v.fps) and v.fps > 0, v.fps
    finally:
        os.unlink(path)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
