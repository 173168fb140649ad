"""Video input (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL 3 / 3.5, SmolVLM) against transformers.

tests/data/<family>/video_ref.npz (tools/refs/video.py) holds transformers' processor output
(token ids with the video expanded: temporal patches of 2 frames, Qwen3-VL's "<t seconds>" text),
get_rope_index's M-RoPE positions (Qwen2.5-VL: second_per_grid_ts) and the eager f32 model's last
logits and last-query attention rows, for synthetic clips: a = 4 frames at 2 fps, b = 5 frames at
3 fps (padded to 6 with the last frame). The clips also go through .mp4 files written with PyAV
(lossless libx264rgb, so decoding gives the same pixels back) to check the file path end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import corehead
from tests.families import DATA, vision_engine, with_file

av = pytest.importorskip("av")

QWEN = ["qwen2vl", "qwen25vl", "qwen3vl"]
FAMILIES = with_file("video_ref.npz", [*QWEN, "internvl3", "internvl35", "idefics3"])
# The placeholder at a video's visual positions (InternVL and SmolVLM: their image token).
PLACEHOLDER = {"internvl3": "<IMG_CONTEXT>", "internvl35": "<IMG_CONTEXT>", "idefics3": "<image>"}
PROMPT = "<|im_start|>user\n<__video__>What happens?<|im_end|>\n<|im_start|>assistant\n"
# Measured: logits 8e-6 .. 3.2e-5 and attention 1.2e-7 .. 1e-6 from transformers (f32 fixtures).
LOGITS_TOL, ATTN_TOL = 1e-4, 1e-5


def ref(family: str) -> dict:
    with np.load(DATA / family / "video_ref.npz") as z:
        return {k: z[k] for k in z.files}


def fps_of(r: dict, case: str) -> float:
    return float(np.asarray(r[f"{case}_fps"]).reshape(-1)[0])


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """A lossless (libx264rgb, qp 0) mp4 of `frames` at `fps`."""
    from fractions import Fraction

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264rgb", rate=Fraction(fps).limit_denominator(1000))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        s.options = {"qp": "0"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.fixture(scope="module", params=FAMILIES)
def family_engine(request):
    with vision_engine(request.param, n_ctx=512, kv_type="f32") as eng:
        yield request.param, eng


@pytest.mark.parametrize("case", ["a", "b"])
def test_ids_and_positions_match_transformers(family_engine, case):
    family, eng = family_engine
    r = ref(family)
    frames, fps = r[f"{case}_frames"], fps_of(r, case)
    ids, visual = eng.prepare(PROMPT, videos=[frames], fps=fps)
    np.testing.assert_array_equal(ids, r[f"{case}_ids"])
    if family not in QWEN:  # InternVL, SmolVLM: 1-D positions, the frames' tokens are image placeholders
        with pytest.raises(ValueError, match="no M-RoPE"):
            eng.rope_positions(PROMPT, videos=[frames], fps=fps)
        placeholder = eng.tokenize(PLACEHOLDER[family], add_special=False)[-1]
        np.testing.assert_array_equal(visual, np.flatnonzero(r[f"{case}_ids"] == placeholder))
        assert eng.detokenize(ids.tolist()).count("Frame") == len(frames)
        return
    np.testing.assert_array_equal(eng.rope_positions(PROMPT, videos=[frames], fps=fps), r[f"{case}_positions"])
    video_pad = eng.tokenize("<|video_pad|>", add_special=False)[0]
    np.testing.assert_array_equal(visual, np.flatnonzero(r[f"{case}_ids"] == video_pad))
    t, h, w = r[f"{case}_video_grid_thw"]
    assert len(visual) == t * h * w // 4


def test_mp4_file_matches_transformers(family_engine, tmp_path):
    """The clip written to .mp4 and decoded by corehead (PyAV): the same ids, positions, last
    logits and last-query attention rows as transformers on the frames."""
    family, eng = family_engine
    r = ref(family)
    path = write_mp4(tmp_path / "clip.mp4", r["a_frames"], fps_of(r, "a"))
    # Sampling the file at its own rate keeps every frame.
    ids, _ = eng.prepare(PROMPT, videos=[path], fps=fps_of(r, "a"))
    np.testing.assert_array_equal(ids, r["a_ids"])
    if family in QWEN:
        np.testing.assert_array_equal(eng.rope_positions(PROMPT, videos=[str(path)], fps=fps_of(r, "a")),
                                      r["a_positions"])
    logits = eng.logits(PROMPT, videos=[path], fps=fps_of(r, "a"))
    d_logits = float(np.abs(logits - r["a_logits_last"]).max())
    att = eng.attention(PROMPT, videos=[path], fps=fps_of(r, "a"))  # [L, H, 1, n]
    d_attn = float(np.abs(att[:, :, 0, :] - r["a_attn_last"]).max())
    print(f"{family}: max|d| logits {d_logits:.2e}, attention {d_attn:.2e}")
    assert d_logits <= LOGITS_TOL
    assert d_attn <= ATTN_TOL


def test_array_logits_and_attention_match_transformers(family_engine):
    family, eng = family_engine
    r = ref(family)
    logits = eng.logits(PROMPT, videos=[r["a_frames"]], fps=fps_of(r, "a"))
    assert float(np.abs(logits - r["a_logits_last"]).max()) <= LOGITS_TOL
    att = eng.attention(PROMPT, videos=[r["a_frames"]], fps=fps_of(r, "a"), positions=[-1])
    assert float(np.abs(att[:, :, 0, :] - r["a_attn_last"]).max()) <= ATTN_TOL


def test_pil_frames_equal_the_array(family_engine):
    from PIL import Image

    family, eng = family_engine
    r = ref(family)
    frames = [Image.fromarray(f) for f in r["a_frames"]]
    a = eng.logits(PROMPT, videos=[r["a_frames"]], fps=2.0)
    b = eng.logits(PROMPT, videos=[frames], fps=2.0)
    np.testing.assert_array_equal(a, b)
    c = eng.logits(PROMPT, videos=frames, fps=2.0)  # a bare list of frames is one video
    np.testing.assert_array_equal(a, c)


def test_second_frame_goes_through_the_second_kernel():
    """Swapping the two frames of each temporal patch changes the embedding (kernel 0 sees the
    first frame, v.patch_embd.weight.1 the second), as in transformers' Conv3D."""
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        r = ref("qwen2vl")
        f = r["a_frames"]
        swapped = f[[1, 0, 3, 2]]
        a = eng.logits(PROMPT, videos=[f], fps=2.0)
        b = eng.logits(PROMPT, videos=[swapped], fps=2.0)
        assert float(np.abs(a - b).max()) > 1e-3
        # Two identical frames in one patch are what transformers makes of a still image (its frame
        # duplicated to temporal_patch_size): the same embeddings and positions (t = 0), so the
        # same logits as the image (whose path tests/test_vision.py checks against transformers).
        still = f[0]
        video = eng.logits("<__video__>x", videos=[np.stack([still, still])], fps=2.0, all_positions=True)
        image = eng.logits("<__media__>x", images=[still], all_positions=True)
        np.testing.assert_allclose(video, image, rtol=0, atol=1e-5)


def test_file_sampled_at_fps(tmp_path):
    """8 frames at 8 fps sampled at 2 fps: frames 0 and 4 (transformers' arange(0, 8, 4)), at
    0 s and 0.5 s: the same prompt as those two frames passed at 2 fps."""
    r = ref("qwen3vl")
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (8, *r["a_frames"].shape[1:]), dtype=np.uint8)
    path = write_mp4(tmp_path / "clip8.mp4", frames, 8.0)
    with vision_engine("qwen3vl", n_ctx=512) as eng:
        ids, _ = eng.prepare(PROMPT, videos=[path], fps=2.0)
        want, _ = eng.prepare(PROMPT, videos=[frames[[0, 4]]], fps=2.0)
        np.testing.assert_array_equal(ids, want)
        assert "<0.2 seconds>" in eng.detokenize(ids.tolist())  # (0 + 0.5) / 2, as transformers formats it
        np.testing.assert_array_equal(eng.logits(PROMPT, videos=[path], fps=2.0),
                                      eng.logits(PROMPT, videos=[frames[[0, 4]]], fps=2.0))
        # max_frames caps the sampled count uniformly: 4 of 8 at 8 fps -> frames 0, 2, 4, 6.
        ids, _ = eng.prepare(PROMPT, videos=[path], fps=8.0, max_frames=4)
        want, _ = eng.prepare(PROMPT, videos=[frames[[0, 2, 4, 6]]], fps=4.0)
        np.testing.assert_array_equal(ids, want)


def test_images_and_videos_in_prompt_order():
    r = ref("qwen2vl")
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        img = r["a_frames"][0]
        vid = r["a_frames"]
        image_pad = eng.tokenize("<|image_pad|>", add_special=False)[0]
        video_pad = eng.tokenize("<|video_pad|>", add_special=False)[0]

        def kinds(ids):
            return [int(t) for i, t in enumerate(ids) if t in (image_pad, video_pad) and (i == 0 or ids[i - 1] != t)]

        ids, _ = eng.prepare("A <__video__> then <__media__>.", images=[img], videos=[vid])
        assert kinds(ids) == [video_pad, image_pad]
        ids, _ = eng.prepare("A <__media__> then <__video__>.", images=[img], videos=[vid])
        assert kinds(ids) == [image_pad, video_pad]
        ids, _ = eng.prepare("no markers", images=[img], videos=[vid])  # images first, then videos
        assert kinds(ids) == [image_pad, video_pad]
        with pytest.raises(ValueError, match="one marker per image and per video"):
            eng.prepare("<__video__><__video__>", videos=[vid])


def test_generate_with_a_video():
    r = ref("qwen2vl")
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        ids = eng.generate_ids(PROMPT, videos=[r["a_frames"]], fps=2.0, max_tokens=3, stop_at_eog=False)
        assert ids[0] == int(np.argmax(eng.logits(PROMPT, videos=[r["a_frames"]], fps=2.0)))
        text = eng.generate(PROMPT, videos=[r["a_frames"]], fps=2.0, max_tokens=3)
        assert isinstance(text, str)


# -- bad input ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen2vl_engine():
    with vision_engine("qwen2vl", n_ctx=128) as eng:
        yield eng


def test_corrupt_and_missing_files(qwen2vl_engine, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError, match="cannot decode the video"):
        qwen2vl_engine.logits(PROMPT, videos=[bad])
    with pytest.raises(FileNotFoundError, match="video file not found"):
        qwen2vl_engine.logits(PROMPT, videos=[tmp_path / "missing.mp4"])
    # A truncated file: the container header survives, the frames do not.
    good = write_mp4(tmp_path / "good.mp4", ref("qwen2vl")["a_frames"], 2.0)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="video"):
        qwen2vl_engine.logits(PROMPT, videos=[cut])


def test_zero_frame_videos(qwen2vl_engine, tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        qwen2vl_engine.logits(PROMPT, videos=[np.zeros((0, 56, 84, 3), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        qwen2vl_engine.logits(PROMPT, videos=[[]])
    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as c:  # a video stream with no frames in it
        s = c.add_stream("libx264rgb", rate=2)
        s.width, s.height, s.pix_fmt = 56, 56, "rgb24"
        c.start_encoding()
        for p in s.encode():
            c.mux(p)
    with pytest.raises(ValueError, match="no frames|cannot decode"):
        qwen2vl_engine.logits(PROMPT, videos=[empty])


def test_bad_arrays_and_options(qwen2vl_engine):
    f = ref("qwen2vl")["a_frames"]
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        qwen2vl_engine.logits(PROMPT, videos=[f[..., :2]])
    with pytest.raises(TypeError, match="uint8"):
        qwen2vl_engine.logits(PROMPT, videos=[f.astype(np.float32)])
    with pytest.raises(ValueError, match="one size"):
        qwen2vl_engine.logits(PROMPT, videos=[[f[0], f[1][:28]]])
    with pytest.raises(TypeError, match="a video must be"):
        qwen2vl_engine.logits(PROMPT, videos=[42])
    for fps in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="fps must be a positive"):
            qwen2vl_engine.logits(PROMPT, videos=[f], fps=fps)
    for max_frames in (0, -3):
        with pytest.raises(ValueError, match="max_frames must be a positive"):
            qwen2vl_engine.logits(PROMPT, videos=[f], max_frames=max_frames)
    with pytest.raises(TypeError, match="max_frames must be an int"):
        qwen2vl_engine.logits(PROMPT, videos=[f], max_frames=2.5)
    with pytest.raises(TypeError, match="fps must be a number"):
        qwen2vl_engine.logits(PROMPT, videos=[f], fps="2")


def test_video_to_a_text_only_model():
    with corehead.Engine(DATA / "qwen2vl" / "model-f32.gguf", n_threads=1, n_ctx=128) as eng:
        with pytest.raises(ValueError, match="no vision projector"):
            eng.logits(PROMPT, videos=[ref("qwen2vl")["a_frames"]])


@pytest.mark.parametrize("family", with_file("mmproj-f32.gguf", ["llava", "gemma3vl"]))
def test_video_to_a_family_without_videos(family):
    with vision_engine(family, n_ctx=512) as eng:
        with pytest.raises(ValueError, match="takes no videos"):
            eng.logits("<__video__>x", videos=[ref("qwen2vl")["a_frames"]])


def test_single_frame_qwen3vl_is_refused():
    with vision_engine("qwen3vl", n_ctx=256) as eng:
        with pytest.raises(ValueError, match="at least 2 frames"):
            eng.logits(PROMPT, videos=[ref("qwen3vl")["a_frames"][:1]])


def test_internvl_frames_over_the_context():
    """InternVL: one tile (16 tokens + text) per frame; the error counts frames one by one."""
    f = ref("internvl3")["a_frames"]
    with vision_engine("internvl3", n_ctx=128) as eng:
        with pytest.raises(corehead.ContextOverflowError, match=r"per frame\), so about (\d+) of its frames fit"):
            eng.logits(PROMPT, videos=[np.concatenate([f] * 4)])
        import re

        try:
            eng.logits(PROMPT, videos=[np.concatenate([f] * 4)])
        except corehead.ContextOverflowError as e:
            fit = int(re.search(r"max_frames=(\d+)", str(e)).group(1))
        assert 1 <= fit < 16
        eng.logits(PROMPT, videos=[np.concatenate([f] * 4)], max_frames=fit)  # the suggestion fits
        with pytest.raises(corehead.ContextOverflowError):
            eng.logits(PROMPT, videos=[np.concatenate([f] * 4)], max_frames=fit + 2)


def test_more_frames_than_fit_the_context(qwen2vl_engine):
    """n_ctx 128: 64 frames (32 temporal patches of 6 tokens) do not fit; the error says how many
    do, and that many fit (2 more do not)."""
    f = ref("qwen2vl")["a_frames"]
    clip = np.concatenate([f] * 16)  # 64 frames
    with pytest.raises(corehead.ContextOverflowError, match=r"about (\d+) of its frames fit") as e:
        qwen2vl_engine.logits(PROMPT, videos=[clip])
    import re

    fit = int(re.search(r"max_frames=(\d+)", str(e.value)).group(1))
    assert 2 <= fit < 64
    qwen2vl_engine.logits(PROMPT, videos=[clip], max_frames=fit)  # fits
    with pytest.raises(corehead.ContextOverflowError):
        qwen2vl_engine.logits(PROMPT, videos=[clip], max_frames=fit + 2)


# -- probes, ranking, chat, CLI -------------------------------------------------------------------


def test_rank_heads_on_a_video_probe():
    """RAM of a video probe against a numpy recomputation: the bbox marks the same region in every
    frame, r_j written out by hand for the 3x2 merged tokens of each temporal patch, and the
    attention rows (checked against transformers above) of the answer-predicting query."""
    r = ref("qwen2vl")
    frames = r["a_frames"]  # 84x56 frames: 3x2 tokens of 28x28 pixels per temporal patch
    prompt = "<|im_start|>user\n<__video__>What moves?<|im_end|>\n<|im_start|>assistant\n"
    probe = corehead.Probe(video=frames, question="What moves?", answer=" a", bbox=[0, 0, 42, 28], fps=2.0,
                           prompt=prompt)
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        ranking = eng.rank_heads([probe], progress=False)
        n_prompt = len(eng.multimodal_tokens(prompt, videos=[frames], fps=2.0))
        ids, visual = eng.prepare(prompt + probe.answer, videos=[frames], fps=2.0)
        assert len(ids) == n_prompt + 1  # " a" is one token: one query, the last prompt position
        rows = eng.attention(prompt + probe.answer, videos=[frames], fps=2.0, positions=[n_prompt - 1])
    per_patch = np.array([1.0, 0.5, 0.0, 0.0, 0.0, 0.0])  # row 0: x 0..28 inside, 28..56 half; row 1 outside
    relevance = np.zeros(len(ids))
    relevance[visual] = np.tile(per_patch, 2)
    want = (rows[:, :, 0, :].astype(np.float64) * relevance).sum(-1)
    np.testing.assert_allclose(ranking.ram, want, rtol=0, atol=1e-6)
    assert ranking.chance == pytest.approx(3.0 / 12)


def test_probe_files_take_videos(tmp_path):
    r = ref("qwen2vl")
    write_mp4(tmp_path / "clip.mp4", r["a_frames"], 2.0)
    (tmp_path / "probes.jsonl").write_text('{"video": "clip.mp4", "question": "What?", "answer": " a", '
                                           '"bbox": [0, 0, 42, 28], "fps": 2}\n')
    (probe,) = corehead.load_probes(tmp_path / "probes.jsonl")
    assert Path(probe.video) == (tmp_path / "clip.mp4").resolve() and probe.fps == 2
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        from_file = eng.rank_heads([probe], progress=False)
        from_array = eng.rank_heads([corehead.Probe(video=r["a_frames"], question="What?", answer=" a",
                                                    bbox=[0, 0, 42, 28], fps=2.0)], progress=False)
    np.testing.assert_array_equal(from_file.ram, from_array.ram)
    with pytest.raises(ValueError, match="an image or a video, not both"):
        corehead.Probe(image=r["a_frames"][0], video=r["a_frames"], question="q")


def test_chat_puts_videos_in_the_last_user_message():
    r = ref("qwen2vl")
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        # The fixture carries no chat template: render the Qwen layout by hand.
        def template(messages, add_generation_prompt=True):
            body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return body + "<|im_start|>assistant\n"

        eng.apply_chat_template = template  # type: ignore[method-assign]
        got = eng.chat([{"role": "user", "content": "What happens?"}], videos=[r["a_frames"]], fps=2.0,
                       max_tokens=3)
        assert got == eng.generate(PROMPT, videos=[r["a_frames"]], fps=2.0, max_tokens=3)


def test_cli_run_with_a_video(tmp_path, capsys):
    from corehead.cli import main as cli_main

    r = ref("qwen2vl")
    path = write_mp4(tmp_path / "clip.mp4", r["a_frames"], 2.0)
    d = DATA / "qwen2vl"
    argv = ["run", "-m", str(d / "model-f32.gguf"), "--mmproj", str(d / "mmproj-f32.gguf"), "--video", str(path),
            "--fps", "2", "-p", PROMPT, "-n", "3", "-t", "2", "-c", "512"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        assert out == eng.generate(PROMPT, videos=[r["a_frames"]], fps=2.0, max_tokens=3) + "\n"
    assert cli_main([*argv[:-8], "--fps", "0", "-p", PROMPT]) == 1  # a clear error, no traceback


def test_video_probes_in_ablation_and_information_flow():
    """Mean ablation's reference means and the knockout flow take video probes: the means over
    a video probe are its prompt's head outputs with the video (not the text alone)."""
    r = ref("qwen2vl")
    prompt = "<|im_start|>user\n<__video__>What moves?<|im_end|>\n<|im_start|>assistant\n"
    probe = corehead.Probe(video=r["a_frames"], question="What moves?", answer=" a", bbox=[0, 0, 42, 28], fps=2.0,
                           prompt=prompt)
    with vision_engine("qwen2vl", n_ctx=512) as eng:
        sums, n = eng.head_output_sums(prompt, videos=[r["a_frames"]], fps=2.0)
        means = eng.head_means([probe])
        info = eng.info
        want = (sums / n).reshape(info["n_layer"], info["n_head"], -1)
        np.testing.assert_allclose(means, want, rtol=0, atol=1e-6)
        assert n == len(eng.multimodal_tokens(prompt, videos=[r["a_frames"]], fps=2.0))
        flow = eng.information_flow(probe, window=1)
        assert np.isfinite(flow.change["Image->Last"]).all() and 0 < flow.prob < 1


def test_native_clip_checks(qwen2vl_engine):
    """A _core.Video built by hand is checked natively: one timestamp per frame, non-decreasing
    and finite, a positive fps."""
    from corehead import _core

    f = ref("qwen2vl")["a_frames"]
    qwen2vl_engine.logits(PROMPT, videos=[_core.Video(f, [0.0, 0.5, 1.0, 1.5], 2.0)])  # well-formed
    for stamps, fps, what in (([0.0, 0.5], 2.0, "4 frames but 2 timestamps"),
                              ([0.0, 1.0, 0.5, 1.5], 2.0, "non-decreasing"),
                              ([0.0, float("nan"), 1.0, 1.5], 2.0, "finite"),
                              ([0.0, 0.5, 1.0, 1.5], 0.0, "fps must be a positive")):
        with pytest.raises(ValueError, match=what):
            qwen2vl_engine.logits(PROMPT, videos=[_core.Video(f, stamps, fps)])


@pytest.mark.parametrize(("n", "words", "duration", "last"), [(21, "twenty-one", "0:00:10", "00:10"),
                                                             (105, "one hundred and five", "0:00:52", "00:52")])
def test_smolvlm_intro_spells_the_frame_count(n, words, duration, last):
    """SmolVLM's intro as its processor writes it (num2words' English, str(timedelta)); the
    expected strings are num2words' and Python's outputs for these counts at 2 fps."""
    f = ref("idefics3")["a_frames"]
    clip = np.concatenate([f] * (n // len(f) + 1))[:n]
    with vision_engine("idefics3", n_ctx=4096) as eng:
        ids, _ = eng.prepare("<__video__>x", videos=[clip], fps=2.0)
        text = eng.detokenize(ids.tolist())
    assert f"series of {words} frames from a {duration} [H:MM:SS] video." in text
    assert text.count("Frame from") == n and f"Frame from {last}:" in text


def test_sparse_video_equals_dense_with_each_frame_masked_after_it(family_engine):
    """CoRe-sparse prefill of a video: the other heads stop seeing a frame (Qwen-VL: a temporal patch)
    once it is over, also when the next one follows with no text between. Equal to the dense model
    with those keys knocked out for the later queries (corehead.sparse.masked_reference), which
    differs from the dense model and from one chunk for the whole video."""
    from corehead import sparse

    family, eng = family_engine
    r = ref(family)
    media = dict(videos=[r["a_frames"]], fps=fps_of(r, "a"))
    info = eng.info
    g = info["n_head"] // info["n_head_kv"]
    heads = [(layer, ((i + 1) % info["n_head_kv"]) * g) for i, layer in enumerate(range(info["n_layer"]))]
    with eng.sparse(heads):
        got = eng.logits(PROMPT, all_positions=True, **media)
        ids = eng.generate_ids(PROMPT, max_tokens=4, stop_at_eog=False, **media)
    with sparse.masked_reference(eng, heads, PROMPT, [], **media):
        want = eng.logits(PROMPT, all_positions=True, **media)
        want_ids = eng.generate_ids(PROMPT, max_tokens=4, stop_at_eog=False, **media)
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 1e-4 * scale
    assert ids == want_ids
    assert float(np.abs(eng.logits(PROMPT, all_positions=True, **media) - want).max()) > 1e-3 * scale
    frames = eng.visual_token_frames(r["a_frames"], fps=fps_of(r, "a"))
    assert len(set(frames[:, 0].tolist())) >= 2  # at least two chunks in the video
