"""Spatio-temporal probes: visual tokens' frames and timestamps, per-frame / per-time-span boxes,
RAM over (frame, region), the JSONL form and its errors.

References, sharing no code with corehead's geometry or relevance:
- frames of each token: rebuilt from transformers' processor output in tests/data/<family>/video_ref.npz
  (Qwen2-VL: video_grid_thw with the processor's merge size 2, temporal patch 2, an odd clip padded
  with its last frame; SmolVLM (idefics3 fixture): the k-th run of <image> placeholders in the ids is
  frame k);
- relevance: token rectangles and their overlaps with the boxes written out in plain loops;
- RAM: the eager attention rows of the query positions (eng.attention, itself checked against
  transformers in tests/test_video.py) times that relevance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import corehead
from corehead.ram import relevance_vectors
from tests.families import DATA, vision_engine, with_file

av = pytest.importorskip("av")

PROMPT = "<|im_start|>user\n<__video__>What moves?<|im_end|>\n<|im_start|>assistant\n"
QWEN_MERGE, QWEN_TEMPORAL = 2, 2  # the Qwen-VL processors' merge_size and temporal_patch_size
# The placeholder of each frame's tokens where the processor gives one view per frame.
PLACEHOLDER = {"internvl3": "<IMG_CONTEXT>", "internvl35": "<IMG_CONTEXT>", "idefics3": "<image>"}
FAMILIES = with_file("video_ref.npz", ["qwen2vl", "qwen25vl", "qwen3vl", "internvl3", "internvl35", "idefics3"])


def ref(family: str) -> dict:
    with np.load(DATA / family / "video_ref.npz") as z:
        return {k: z[k] for k in z.files}


def fps_of(r: dict, case: str) -> float:
    return float(np.asarray(r[f"{case}_fps"]).reshape(-1)[0])


@pytest.fixture(scope="module")
def qwen():
    with vision_engine("qwen2vl", n_ctx=512, kv_type="f32") as eng:
        yield eng


@pytest.fixture(scope="module")
def smol():
    with vision_engine("idefics3", n_ctx=512, kv_type="f32") as eng:
        yield eng


@pytest.fixture(scope="module")
def engines(qwen, smol):
    """An engine per fixture family, opened on first use."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        opened = {"qwen2vl": qwen, "idefics3": smol}

        def get(family: str):
            if family not in opened:
                opened[family] = stack.enter_context(vision_engine(family, n_ctx=512, kv_type="f32"))
            return opened[family]

        yield get


def expected_frames(family: str, r: dict, case: str, eng) -> np.ndarray:
    """[n_visual, 2] (first, last) frame of each visual token, from transformers' processor output."""
    n_frames = len(r[f"{case}_frames"])
    if f"{case}_video_grid_thw" in r:  # Qwen-VL
        t, h, w = (int(x) for x in r[f"{case}_video_grid_thw"])
        assert t == (n_frames + 1) // QWEN_TEMPORAL
        per_patch = (h // QWEN_MERGE) * (w // QWEN_MERGE)
        rows = []
        for g in range(t):
            first, last = QWEN_TEMPORAL * g, min(QWEN_TEMPORAL * g + 1, n_frames - 1)  # padding = the last frame
            rows += [(first, last)] * per_patch
        return np.array(rows)
    placeholder = eng.tokenize(PLACEHOLDER[family], add_special=False)[-1]
    pos = np.flatnonzero(r[f"{case}_ids"] == placeholder)
    runs = np.split(pos, np.flatnonzero(np.diff(pos) > 1) + 1)
    assert len(runs) == n_frames
    return np.concatenate([np.full((len(run), 2), k) for k, run in enumerate(runs)])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", ["a", "b"])
def test_token_frames_match_the_processor_geometry(family, case, engines):
    eng = engines(family)
    r = ref(family)
    frames, fps = r[f"{case}_frames"], fps_of(r, case)
    want = expected_frames(family, r, case, eng)
    got = eng.visual_token_frames(frames, fps=fps)
    assert got.dtype == np.int32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    assert len(got) == len(eng.visual_token_positions(PROMPT, videos=[frames], fps=fps))
    # An array is taken as frames sampled at fps: frame k at k / fps seconds.
    np.testing.assert_allclose(eng.visual_token_times(frames, fps=fps), want / fps, rtol=0, atol=1e-12)
    # The boxes of each frame slot's tokens tile the whole frame once.
    (clip,) = eng.load_videos([frames], fps=fps)
    boxes = eng.visual_token_boxes(clip).astype(np.float64)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    height, width = frames.shape[1:3]
    for k in range(len(frames)):
        assert area[(want[:, 0] == k) | (want[:, 1] == k)].sum() == pytest.approx(width * height)


def test_token_frames_of_a_sampled_file(qwen, tmp_path):
    """A file sampled at 2 of its 4 fps: the sampled-frame indices count the kept frames and the
    times are the kept frames' source timestamps."""
    from tests.test_video import write_mp4

    frames = np.repeat(ref("qwen2vl")["a_frames"], 2, axis=0)  # 8 frames at 4 fps -> 4 kept
    path = write_mp4(tmp_path / "clip.mp4", frames, 4.0)
    got = qwen.visual_token_frames(path, fps=2.0)
    np.testing.assert_array_equal(np.unique(got, axis=0), [[0, 1], [2, 3]])
    times = qwen.visual_token_times(path, fps=2.0)
    np.testing.assert_allclose(np.unique(times, axis=0), [[0.0, 0.5], [1.0, 1.5]])  # source frames 0, 2, 4, 6


def overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def grid_boxes(width: int, height: int, cols: int, rows: int) -> list[tuple[float, float, float, float]]:
    """Row-major rectangles of a cols x rows token grid over the frame."""
    tw, th = width / cols, height / rows
    return [(c * tw, r * th, (c + 1) * tw, (r + 1) * th) for r in range(rows) for c in range(cols)]


def hand_relevance(token_rects, token_frames, boxes_of_frame) -> np.ndarray:
    """Mean over each token's two frame slots of area(token ∩ that frame's one box) / area(token)."""
    out = []
    for rect, slots in zip(token_rects, token_frames):
        area = (rect[2] - rect[0]) * (rect[3] - rect[1])
        out.append(np.mean([overlap(rect, boxes_of_frame[f]) / area if f in boxes_of_frame else 0.0
                            for f in slots]))
    return np.array(out)


def test_rank_heads_with_per_frame_boxes_qwen2vl(qwen):
    """4 frames of 84x56: temporal patches (0, 1) and (2, 3), 3x2 tokens of 28x28 each. A box on
    frame 0 and another on frame 3 (the second one given as a time span: frame 3 is at 1.5 s)."""
    r = ref("qwen2vl")
    frames = r["a_frames"]
    boxes = {0: (0.0, 0.0, 42.0, 28.0), 3: (28.0, 14.0, 84.0, 56.0)}
    probe = corehead.Probe(video=frames, question="What moves?", answer=" a", fps=2.0, prompt=PROMPT,
                           bbox=[{"frame": 0, "bbox": list(boxes[0])},
                                 {"t0": 1.4, "t1": 1.6, "bbox": [list(boxes[3])]}])
    ranking = qwen.rank_heads([probe], progress=False)
    n_prompt = len(qwen.multimodal_tokens(PROMPT, videos=[frames], fps=2.0))
    ids, visual = qwen.prepare(PROMPT + probe.answer, videos=[frames], fps=2.0)
    assert len(ids) == n_prompt + 1
    rows = qwen.attention(PROMPT + probe.answer, videos=[frames], fps=2.0, positions=[n_prompt - 1])
    rects = grid_boxes(84, 56, 3, 2) * 2
    slots = [(0, 1)] * 6 + [(2, 3)] * 6
    rel_visual = hand_relevance(rects, slots, boxes)
    # Spelled out: patch (0, 1): [1, .5, 0, 0, 0, 0] / 2; patch (2, 3): frame 3's box over the 6 tokens / 2.
    np.testing.assert_allclose(rel_visual[:6], [0.5, 0.25, 0, 0, 0, 0])
    np.testing.assert_allclose(rel_visual[6:], np.array([0, 0.5, 0.5, 0, 1, 1]) / 2)
    relevance = np.zeros(len(ids))
    relevance[visual] = rel_visual
    want = (rows[:, :, 0, :].astype(np.float64) * relevance).sum(-1)
    np.testing.assert_allclose(ranking.ram, want, rtol=0, atol=1e-6)
    assert ranking.chance == pytest.approx(rel_visual.sum() / 12)
    # The same target keyed by frame only gives the same ranking.
    by_frame = qwen.rank_heads([corehead.Probe(video=frames, question="What moves?", answer=" a", fps=2.0,
                                               prompt=PROMPT, bbox={k: list(b) for k, b in boxes.items()})],
                               progress=False)
    np.testing.assert_array_equal(by_frame.ram, ranking.ram)


def test_rank_heads_with_per_frame_boxes_smolvlm(smol):
    """SmolVLM: each of the 4 frames of 64x64 is 4x4 tokens of 16x16; boxes on frames 1 and 2 only."""
    r = ref("idefics3")
    frames = r["a_frames"]
    boxes = {1: (0.0, 0.0, 24.0, 16.0), 2: (40.0, 40.0, 64.0, 64.0)}
    probe = corehead.Probe(video=frames, question="What moves?", fps=2.0, prompt=PROMPT,
                           bbox={str(k): list(b) for k, b in boxes.items()})  # JSON-style string keys
    ranking = smol.rank_heads([probe], query="last", progress=False)
    ids, visual = smol.prepare(PROMPT, videos=[frames], fps=2.0)
    rows = smol.attention(PROMPT, videos=[frames], fps=2.0, positions=[len(ids) - 1])
    rects = grid_boxes(64, 64, 4, 4) * 4
    slots = [(k, k) for k in range(4) for _ in range(16)]
    rel_visual = hand_relevance(rects, slots, boxes)
    assert rel_visual[:16].sum() == 0 and rel_visual[48:].sum() == 0
    np.testing.assert_allclose(rel_visual[16:20], [1, 0.5, 0, 0])
    relevance = np.zeros(len(ids))
    relevance[visual] = rel_visual
    want = (rows[:, :, 0, :].astype(np.float64) * relevance).sum(-1)
    np.testing.assert_allclose(ranking.ram, want, rtol=0, atol=1e-6)
    assert ranking.chance == pytest.approx(rel_visual.sum() / 64)


@pytest.mark.parametrize("family,case", [("qwen2vl", "a"), ("qwen2vl", "b"), ("idefics3", "b")])
def test_a_box_on_one_frame_leaves_every_other_frame_at_zero(family, case, request):
    eng = request.getfixturevalue("qwen" if family == "qwen2vl" else "smol")
    r = ref(family)
    frames, fps = r[f"{case}_frames"], fps_of(r, case)
    height, width = frames.shape[1:3]
    want_frames = expected_frames(family, r, case, eng)
    (clip,) = eng.load_videos([frames], fps=fps)
    ids, visual = eng.prepare(PROMPT, [clip])
    for k in range(len(frames)):
        probe = corehead.Probe(video=frames, question="What moves?", fps=fps, bbox={k: [0, 0, width, height]})
        rel, vis = relevance_vectors(eng, probe, PROMPT, [clip], len(ids))
        np.testing.assert_array_equal(np.flatnonzero(vis), visual)
        rv = rel[visual]
        shows = (want_frames[:, 0] == k) | (want_frames[:, 1] == k)
        assert shows.any() and (rv[~shows] == 0).all()
        # A whole-frame box: the tokens' slots on frame k count fully (a patch padded with the last
        # frame shows it in both slots).
        np.testing.assert_allclose(rv[shows], ((want_frames[shows] == k).sum(1)) / 2)
        assert (rel[np.setdiff1d(np.arange(len(ids)), visual)] == 0).all()


def test_jsonl_round_trip(qwen, tmp_path):
    from tests.test_video import write_mp4

    frames = ref("qwen2vl")["a_frames"]
    write_mp4(tmp_path / "clip.mp4", frames, 2.0)
    line = {"video": "clip.mp4", "fps": 2, "question": "What moves?", "answer": " a",
            "bbox": {"0": [0, 0, 42, 28], "3": [[28, 14, 84, 56], [0, 0, 10, 10]]}}
    spans = dict(line, bbox=[{"frame": 0, "bbox": [0, 0, 42, 28]},
                             {"t0": 1.5, "t1": 1.5, "bbox": [[28, 14, 84, 56], [0, 0, 10, 10]]}])
    (tmp_path / "probes.jsonl").write_text(json.dumps(line) + "\n" + json.dumps(spans) + "\n")
    a, b = corehead.load_probes(tmp_path / "probes.jsonl")
    assert a.per_frame and b.per_frame and Path(a.video) == (tmp_path / "clip.mp4").resolve()
    ts = [0.0, 0.5, 1.0, 1.5]
    for p in (a, b):
        got = p.frame_boxes(4, ts)
        np.testing.assert_array_equal(got[0], [[0, 0, 42, 28]])
        assert got[1].shape == got[2].shape == (0, 4)
        np.testing.assert_array_equal(got[3], [[28, 14, 84, 56], [0, 0, 10, 10]])
    ranked = qwen.rank_heads([a, b], progress=False)
    in_memory = qwen.rank_heads([corehead.Probe(video=frames, question="What moves?", answer=" a", fps=2.0,
                                                bbox={0: [0, 0, 42, 28], 3: [[28, 14, 84, 56], [0, 0, 10, 10]]})],
                                progress=False)
    np.testing.assert_allclose(ranked.per_probe["ram"][0], in_memory.ram, rtol=0, atol=0)
    np.testing.assert_allclose(ranked.per_probe["ram"][1], in_memory.ram, rtol=0, atol=0)


# -- errors ------------------------------------------------------------------------------------


def test_bad_probe_files_name_the_line(tmp_path):
    img = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(img)
    cases = {
        '{"image": "img.png", "question": "q", "bbox": {"0": [0, 0, 4, 4]}}': "needs a video probe",
        '{"video": "v.mp4", "question": "q", "bbox": {"-1": [0, 0, 4, 4]}}': "sampled-frame indices",
        '{"video": "v.mp4", "question": "q", "bbox": {"x": [0, 0, 4, 4]}}': "sampled-frame indices",
        '{"video": "v.mp4", "question": "q", "bbox": {"0": [0, 0, 4]}}': "bbox of frame '0' must be",
        '{"video": "v.mp4", "question": "q", "bbox": {}}': "at least one frame",
        '{"video": "v.mp4", "question": "q", "bbox": [{"t0": 2, "t1": 1, "bbox": [0, 0, 4, 4]}]}': "ends before",
        '{"video": "v.mp4", "question": "q", "bbox": [{"t0": -1, "t1": 1, "bbox": [0, 0, 4, 4]}]}': ">= 0",
        '{"video": "v.mp4", "question": "q", "bbox": [{"t0": "a", "t1": 1, "bbox": [0, 0, 4, 4]}]}': "number of",
        '{"video": "v.mp4", "question": "q", "bbox": [{"frame": 0}]}': "must have",
        '{"video": "v.mp4", "question": "q", "bbox": [{"frame": 0, "t0": 0, "t1": 1, "bbox": [0,0,1,1]}]}':
            "must have",
        '{"video": "v.mp4", "question": "q", "bbox": [{"frame": 0, "bbox": [0, 0, 4, 4]}, [0, 0, 1, 1]]}':
            "bbox item 1",
    }
    for text, match in cases.items():
        path = tmp_path / "p.jsonl"
        path.write_text('{"question": "fine", "span": [0, 2]}\n' + text + "\n")
        with pytest.raises(ValueError, match=rf"p\.jsonl:2: .*{match}"):
            corehead.load_probes(path)


def test_per_frame_boxes_need_a_video_and_no_mask():
    with pytest.raises(ValueError, match="needs a video probe"):
        corehead.Probe(image=np.zeros((8, 8, 3), np.uint8), question="q", bbox={0: [0, 0, 4, 4]})
    with pytest.raises(ValueError, match="needs a video probe"):
        corehead.Probe(question="q", bbox=[{"frame": 0, "bbox": [0, 0, 4, 4]}])
    with pytest.raises(ValueError, match="not both"):
        corehead.Probe(video=np.zeros((2, 8, 8, 3), np.uint8), question="q", bbox={0: [0, 0, 4, 4]},
                       mask=np.ones((8, 8), bool))
    p = corehead.Probe(video=np.zeros((2, 8, 8, 3), np.uint8), question="q", bbox={0: [0, 0, 4, 4]})
    with pytest.raises(ValueError, match="frame_boxes"):
        p.boxes()


def test_frames_and_spans_outside_the_clip(qwen, tmp_path):
    """Frame indices and time spans are checked against the clip the model sees (after sampling),
    naming the valid range; rank_heads names the probe and its line."""
    frames = ref("qwen2vl")["a_frames"]  # 4 frames at 2 fps: t = 0, 0.5, 1, 1.5
    video = dict(video=frames, question="What moves?", answer=" a", fps=2.0)
    bad = [
        ({4: [0, 0, 10, 10]}, r"frame 4 does not exist: the clip has 4 sampled frame\(s\), indices 0 \.\. 3"),
        ({1: [0, 0, 10, 10], 9: [0, 0, 10, 10]}, r"frame 9 does not exist.*t = 0 \.\. 1\.5 s"),
        ([{"t0": 2.0, "t1": 3.0, "bbox": [0, 0, 10, 10]}], r"t0=2 \.\. t1=3 s is outside the video.*0, 0\.5, 1, 1\.5"),
        ([{"t0": 0.1, "t1": 0.4, "bbox": [0, 0, 10, 10]}], "between sampled frames"),
        ({0: [100, 100, 120, 120]}, r"bbox of frame 0 .* lies outside the 84x56 image"),
        ({0: [10, 10, 0, 20]}, "inverted or empty"),
    ]
    for bbox, match in bad:
        with pytest.raises(ValueError, match=rf"probe 0: .*{match}"):
            qwen.rank_heads([corehead.Probe(bbox=bbox, **video)], progress=False)
    # max_frames=2 keeps frames 0 and 2 of the 4: frame 2 no longer exists, t=1.0 still does.
    two = r"frame 2 does not exist: the clip has 2 sampled frame\(s\), indices 0 \.\. 1"
    with pytest.raises(ValueError, match=two):
        qwen.rank_heads([corehead.Probe(bbox={2: [0, 0, 10, 10]}, max_frames=2, **video)], progress=False)
    qwen.rank_heads([corehead.Probe(bbox=[{"t0": 1.0, "t1": 1.0, "bbox": [0, 0, 10, 10]}], max_frames=2, **video)],
                    progress=False)
    # Timestamps of 1/3 s steps written out in JSON precision still name their frame.
    third = corehead.Probe(video=np.zeros((3, 8, 8, 3), np.uint8), question="q",
                           bbox=[{"t0": 0.333333, "t1": 0.333333, "bbox": [0, 0, 4, 4]}])
    assert [len(b) for b in third.frame_boxes(3, [0.0, 1 / 3, 2 / 3])] == [0, 1, 0]
    # From a file: the line is named.
    from tests.test_video import write_mp4

    write_mp4(tmp_path / "clip.mp4", frames, 2.0)
    (tmp_path / "p.jsonl").write_text(
        '{"video": "clip.mp4", "fps": 2, "question": "q", "answer": " a", "bbox": {"0": [0, 0, 9, 9]}}\n'
        '{"video": "clip.mp4", "fps": 2, "question": "q", "answer": " a", "bbox": {"5": [0, 0, 9, 9]}}\n')
    with pytest.raises(ValueError, match=r"probe 1 \(line 2\): bbox frame 5 does not exist"):
        qwen.rank_heads(corehead.load_probes(tmp_path / "p.jsonl"), progress=False)


def test_token_frames_need_a_video(qwen):
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        qwen.visual_token_frames(np.zeros((56, 84, 3), np.uint8))
    with pytest.raises(ValueError, match="fps"):
        qwen.visual_token_frames(ref("qwen2vl")["a_frames"], fps=0)
    with pytest.raises(ValueError, match="give one video.*got 2"):
        qwen.visual_token_frames([ref("qwen2vl")["a_frames"]] * 2)
