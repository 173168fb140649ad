"""RAM (docs/architecture.md §4) against a numpy re-computation from transformers' eager attention
(committed in the fixtures), plus the HeadRanking / HeadSet logic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from corehead import Engine, HeadRanking, Probe, rank_heads
from corehead.probes import box_relevance, clip_boxes, load_probes, mask_relevance
from corehead.ram import relevance_vectors

DATA = Path(__file__).parent / "data"


def text_probes(meta_text: str) -> list[Probe]:
    # Teacher-force the fixture prompt's tail as the "answer": the full sequence is then exactly
    # the fixture prompt, whose attention transformers recorded.
    q, a = meta_text[:-8], meta_text[-8:]
    spans = [(4, 14), (0, 3), (q.find("blue"), q.find("blue") + 11)]
    return [Probe(question=q, prompt=q, answer=a, span=s) for s in spans]


# A deliberate subset of the text fixtures (since the test was written): the plain and the
# sliding-window family.
@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("query", ["answer", "last"])
def test_rank_heads_equals_numpy_from_transformers(family, query):
    meta = json.loads((DATA / family / "meta.json").read_text())
    ref = np.load(DATA / family / "ref.npz")
    text = meta["prompts"][0]["text"]
    probes = text_probes(text)
    with Engine(DATA / family / "model-f32.gguf", n_threads=2) as eng:
        ids = eng.tokenize(text)
        assert ids == ref["prompt_ids"].tolist()
        ranking = eng.rank_heads(probes, query=query, progress=False)
        rams, vms, chances = [], [], []
        for p in probes:
            n_prompt = len(eng.tokenize(p.prompt))
            rows = list(range(n_prompt - 1, len(ids) - 1)) if query == "answer" else [n_prompt - 1]
            r, vis = relevance_vectors(eng, p, p.prompt, [], len(ids))
            A = ref["attn_all"][:, :, rows, :]  # transformers, [L, H, |Q|, T]
            rams.append(np.einsum("lhtk,k->lh", A, r) / len(rows))
            vms.append(np.einsum("lhtk,k->lh", A, vis) / len(rows))
            chances.append(r.sum() / vis.sum())
    ram, vm, chance = np.mean(rams, 0), np.mean(vms, 0), np.mean(chances)
    np.testing.assert_allclose(ranking.ram, ram, atol=1e-4)
    np.testing.assert_allclose(ranking.visual_mass, vm, atol=1e-4)
    np.testing.assert_allclose(ranking.focus, ram / vm, atol=1e-4)
    np.testing.assert_allclose(ranking.lift, ram / vm / chance, rtol=1e-4)
    assert ranking.n_probes == 3


def test_box_relevance_against_brute_force():
    rng = np.random.default_rng(0)
    tokens = np.array([[x, y, x + 8, y + 8] for y in range(0, 64, 8) for x in range(0, 96, 8)], dtype=float)
    for i in range(20):
        n = 1 if i % 2 else 3  # one box takes the vectorized path, several the sweep
        boxes = np.sort(rng.uniform(0, 96, (n, 2, 2)), axis=1).reshape(n, 4)[:, [0, 2, 1, 3]]
        boxes[:, [1, 3]] *= 64 / 96
        # Brute force on a 1/16-pixel grid of sample points (boundary error < 0.01 per token).
        ys, xs = np.mgrid[0:64:1 / 16, 0:96:1 / 16] + 1 / 32
        inside = np.zeros(xs.shape, bool)
        for x0, y0, x1, y1 in boxes:
            inside |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
        want = np.array([inside[int(y0 * 16):int(y1 * 16), int(x0 * 16):int(x1 * 16)].mean()
                         for x0, y0, x1, y1 in tokens])
        np.testing.assert_allclose(box_relevance(tokens, boxes), want, atol=0.01)


def test_mask_relevance_and_box_checks():
    tokens = np.array([[0, 0, 4, 4], [4, 0, 8, 4]], float)
    mask = np.zeros((4, 8), bool)
    mask[:, :2] = True
    np.testing.assert_allclose(mask_relevance(tokens, mask), [0.5, 0.0])
    with pytest.raises(ValueError, match="inverted"):
        clip_boxes(np.array([[5, 5, 1, 1]], float), 8, 8)
    with pytest.raises(ValueError, match="outside"):
        clip_boxes(np.array([[20, 20, 30, 30]], float), 8, 8)
    with pytest.warns(UserWarning, match="clipped"):
        out = clip_boxes(np.array([[-2, 0, 4, 4]], float), 8, 8)
    assert out.tolist() == [[0, 0, 4, 4]]


def make_ranking(ram: np.ndarray, n_head_kv: int) -> HeadRanking:
    return HeadRanking(ram=ram, visual_mass=np.ones_like(ram), chance=0.5, n_probes=1, n_head_kv=n_head_kv,
                       model={"arch": "llama", "name": "x", "n_embd": 64})


def test_top_bottom_kv_heads_and_save_load(tmp_path):
    ram = np.arange(2 * 8, dtype=float).reshape(2, 8) / 16
    r = make_ranking(ram, n_head_kv=2)
    assert r.top(0.05) == [(1, 7)]              # ceil(0.05 * 16) = 1
    assert r.top(0.2) == [(1, 7), (1, 6), (1, 5), (1, 4)]
    assert r.bottom(0.1) == [(0, 0), (0, 1)]
    assert r.top(0.2).kv_heads() == [(1, 1)]   # heads 4..7 share KV head 1
    np.testing.assert_array_equal(r.kv_scores(), ram.reshape(2, 2, 4).max(-1))
    r.save(tmp_path / "heads.json")
    back = HeadRanking.load(tmp_path / "heads.json")
    np.testing.assert_array_equal(back.ram, r.ram)
    assert back.top(0.2) == r.top(0.2)
    with pytest.raises(ValueError, match="fraction"):
        r.top(0)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="not a corehead HeadRanking"):
        HeadRanking.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="3 layers"):
        make_ranking(np.zeros((3, 8)), 2).check_model({"n_layer": 2, "n_head": 8, "n_head_kv": 2})


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    make_ranking(np.random.default_rng(0).random((4, 8)), 2).plot(tmp_path / "ram.png")
    assert (tmp_path / "ram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_validation_and_loading(tmp_path):
    with pytest.raises(TypeError):
        Probe(question=3)
    with pytest.raises(ValueError, match="span"):
        Probe(question="abc", span=(2, 9))
    (tmp_path / "p.jsonl").write_text('{"image": "a.png", "question": "q?", "answer": "red", "bbox": [0, 0, 4, 4]}\n'
                                      "\n" '{"question": "text only", "span": [0, 4]}\n')
    probes = load_probes(tmp_path / "p.jsonl")
    assert len(probes) == 2 and probes[0].image == str(tmp_path / "a.png")
    assert probes[0].boxes().tolist() == [[0, 0, 4, 4]]
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_probes(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        load_probes(tmp_path / "none.jsonl")


def test_rank_heads_bad_input():
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=1) as eng:
        with pytest.raises(ValueError, match="at least one probe"):
            rank_heads(eng, [], progress=False)
        with pytest.raises(ValueError, match="probe 0: .*answer"):
            rank_heads(eng, [Probe(question="abc", prompt="abc", span=(0, 1))], progress=False)
        with pytest.raises(ValueError, match="probe 0: .*span"):
            rank_heads(eng, [Probe(question="abc", prompt="abc", answer="d")], progress=False)
        with pytest.raises(TypeError, match="probe 0"):
            rank_heads(eng, ["not a probe"], progress=False)


def test_prompt_progress_reports_every_pass_and_can_abort():
    """The progress callback sees each vision pass and each n_batch forward pass of a prompt (counts
    recomputed from the token layout), an exception in it abandons the call and leaves the engine
    usable, and rank_heads shows a per-probe prefill bar for prompts of several passes."""
    import math

    from corehead import toy
    from corehead.progress import prompt_progress

    n_batch = 8
    item = toy.probes(1)[0]
    prompt = toy.prompt_text(item["question"], "<__media__>") + " the answer is"
    with Engine.toy(n_threads=2, n_batch=n_batch) as eng:
        n = len(eng.multimodal_tokens(prompt, [item["image"]]))
        calls: list[tuple[str, int, int]] = []
        eng._native().set_progress(lambda phase, done, total: calls.append((phase, done, total)))
        try:
            before = eng.logits(prompt, images=[item["image"]])
        finally:
            eng._native().set_progress(None)
        assert calls[0] == ("encode", 1, 1)
        prefill = [c for c in calls if c[0] == "prefill"]
        assert [c[1] for c in prefill] == [min(n, (i + 1) * n_batch) for i in range(math.ceil(n / n_batch))]
        assert all(c[2] == n for c in prefill)

        def stop(phase: str, done: int, total: int) -> None:
            if phase == "prefill" and done >= 2 * n_batch:
                raise KeyboardInterrupt

        eng._native().set_progress(stop)
        with pytest.raises(KeyboardInterrupt):
            eng.logits(prompt, images=[item["image"]])
        eng._native().set_progress(None)
        np.testing.assert_array_equal(eng.logits(prompt, images=[item["image"]]), before)

        with prompt_progress(eng, "probe 0"):
            eng.logits(prompt, images=[item["image"]])
        calls.clear()
        eng.logits(prompt, images=[item["image"]])  # the context manager removed its callback
        assert calls == []


def test_rank_heads_shows_prefill_progress(capsys):
    from corehead import toy

    with Engine.toy(n_threads=2, n_batch=8) as eng:
        rank_heads(eng, toy.as_probes(toy.probes(2)), progress=True)
    err = capsys.readouterr().err
    assert "probe 0 prefill" in err and "probe 1 prefill" in err
    with Engine.toy(n_threads=2) as eng:  # one forward pass per probe: no inner bar
        rank_heads(eng, toy.as_probes(toy.probes(2)), progress=True)
    assert "prefill" not in capsys.readouterr().err
