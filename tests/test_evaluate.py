"""Evaluation and the ablation curve (issue 6): choice log-likelihoods against transformers'
logits, the metrics against an independent re-computation, the curve's head sets, and the
paper's claim on the embedded toy VLM (top RAM heads are necessary, bottom ones are not)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from corehead import AblationCurve, Engine, HeadRanking, toy
from corehead.evaluate import choice_logprobs, wilson_interval
from corehead.ram import normalize_answer

DATA = Path(__file__).parent / "data"


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


@pytest.mark.parametrize("ablate", [False, True])
def test_choice_logprobs_match_transformers(ablate):
    ref = np.load(DATA / "llama" / "ref.npz")
    abl = np.load(DATA / "llama" / "ablation_ref.npz")
    ids = ref["prompt_ids"].tolist()
    want_logits = abl["zeroA_logits_all"] if ablate else ref["logits_all"]
    heads = [tuple(h) for h in abl["zeroA_heads"].tolist()]
    k = 10
    # Choices: the true continuation (3 tokens), a 1-token one and a 2-token one.
    choices = [ids[k:k + 3], [ids[k + 5]], [ids[k + 1], ids[k]]]
    lp = _log_softmax(want_logits)
    want = []
    for c in choices:
        # transformers' logits for prompt + c exist only along the true sequence; rebuild
        # the others from the rows that condition on the same prefix.
        if c == ids[k:k + len(c)]:
            want.append(sum(lp[k - 1 + i, t] for i, t in enumerate(c)))
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        if ablate:
            with eng.ablated(heads, method="zero"):
                got = choice_logprobs(eng, ids[:k], choices)
        else:
            got = choice_logprobs(eng, ids[:k], choices)
    assert got[0] == pytest.approx(want[0], abs=1e-3)
    # The single-token choice is read from the prompt's last row.
    assert got[1] == pytest.approx(lp[k - 1, choices[1][0]], abs=1e-3)
    assert np.isfinite(got).all()


def test_single_and_multi_token_paths_agree():
    # A single-token choice scored alone (one forward pass) and next to a multi-token choice
    # (one pass per choice) must give the same log-likelihood.
    ref = np.load(DATA / "llama" / "ref.npz")
    ids = ref["prompt_ids"].tolist()
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2) as eng:
        one = choice_logprobs(eng, ids[:8], [[ids[8]], [ids[9]]])
        mixed = choice_logprobs(eng, ids[:8], [[ids[8]], [ids[9], ids[10]]])
    assert one[0] == pytest.approx(mixed[0], abs=1e-4)


def _rerun_logprobs(eng, prompt, choices, images=()):
    """Independent of choice_logprobs' cache reuse: one full forward of prompt + choice per
    choice, every row copied out, log-softmax in numpy."""
    out = []
    for c in choices:
        if images:
            base = eng.multimodal_tokens(prompt, images)
            full = eng.multimodal_tokens(prompt + c, images)
            lg = eng.logits(prompt + c, images=images, all_positions=True)
        else:
            base, full = list(prompt), list(prompt) + list(c)
            lg = eng.logits(full, all_positions=True)
        k = 0
        while k < min(len(base), len(full)) and base[k] == full[k]:
            k += 1
        lp = _log_softmax(lg)
        out.append(sum(lp[i - 1, full[i]] for i in range(k, len(full))))
    return np.array(out)


def test_choice_logprobs_from_one_prefill_equal_a_forward_per_choice():
    ref = np.load(DATA / "llama" / "ref.npz")
    ids = ref["prompt_ids"].tolist()
    choices = [ids[10:13], [ids[15]], [ids[11], ids[10]], ids[3:9]]
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2, n_batch=4) as eng:  # several batches
        got = choice_logprobs(eng, ids[:10], choices)
        want = _rerun_logprobs(eng, ids[:10], choices)
        with eng.ablated([(1, 1), (0, 2)], method="zero"):
            got_ab = choice_logprobs(eng, ids[:10], choices)
            want_ab = _rerun_logprobs(eng, ids[:10], choices)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got_ab, want_ab, atol=1e-5)
    assert np.abs(got - got_ab).max() > 1e-3


@pytest.mark.parametrize("family", ["llava", "qwen2vl", "gemma3vl", "qwen3vl", "gemma4vl"])
def test_choice_logprobs_with_images_and_knockout_equal_a_forward_per_choice(family):
    from tests.families import meta, vision_engine

    img = str(DATA / family / "image.png")
    prompt = meta(family)["prompt"]
    choices = [" red", " a blue", " green square", " nothing at all"]
    with vision_engine(family) as eng:
        imgs = eng.load_images([img])
        got = choice_logprobs(eng, prompt, choices, imgs)
        want = _rerun_logprobs(eng, prompt, choices, imgs)
        with eng.ablated([(0, 1), (1, 0)], method="knockout"):  # the appended tokens stay knocked out
            got_ko = choice_logprobs(eng, prompt, choices, imgs)
            want_ko = _rerun_logprobs(eng, prompt, choices, imgs)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(got_ko, want_ko, atol=1e-5)
    assert np.abs(got - got_ko).max() > 1e-4


@pytest.mark.parametrize("family", ["llama", "gemma3", "gemma4"])  # sliding windows of 16 and 8; gemma4 shares K/V
def test_append_branches_equal_transformers_continuations(family):
    """Continuations of one cached prefix in one forward pass: each branch sees only its prefix
    and itself, at its own positions (RoPE, sliding window), so true continuations give
    transformers' logits for those rows, and the cache keeps its length."""
    ref = np.load(DATA / family / "ref.npz")
    ids = ref["p1_prompt_ids"].tolist()
    want = ref["p1_logits_all"]
    n = 40
    with Engine(DATA / family / "model-f32.gguf", n_threads=2, n_batch=16) as eng:
        eng.logits(ids[:n])
        branches = [(20, ids[20:50]),  # longer than n_batch: run alone, in chunks
                    (35, ids[35:42]), (5, ids[5:9]), (12, ids[12:17]),  # packed into one batch
                    (30, [ids[33], ids[31]])]  # not the prompt's continuation
        got = eng.append_branches(branches)
        assert [g.shape[0] for g in got] == [30, 7, 4, 5, 2]
        for (k, toks), g in zip(branches[:4], got[:4]):
            np.testing.assert_allclose(g, want[k:k + len(toks)], atol=2e-3)
        eng.truncate(30)
        np.testing.assert_allclose(got[4], eng.append([ids[33], ids[31]], all_positions=True), atol=1e-5)
        eng.logits(ids[:n])
        eng.append_branches(branches)
        assert eng.n_past == n
        np.testing.assert_allclose(eng.append(ids[n:], all_positions=True), want[n:], atol=2e-3)
        with pytest.raises(ValueError, match="outside"):
            eng.append_branches([(eng.n_past + 1, ids[:2])])
        with pytest.raises(ValueError, match="empty|no tokens"):
            eng.append_branches([(3, [])])
        with pytest.raises(ValueError, match="at least one"):
            eng.append_branches([])
        with pytest.raises(TypeError):
            eng.append_branches([(1.5, ids[:2])])
        with pytest.raises(TypeError):
            eng.append_branches([ids[:2]])


def test_logits_at_positions_truncate_and_append():
    ref = np.load(DATA / "llama" / "ref.npz")
    ids = ref["prompt_ids"].tolist()
    with Engine(DATA / "llama" / "model-f32.gguf", n_threads=2, n_batch=5) as eng:
        rows = eng.logits(ids, positions=[-1, 3, 0, 3])
        np.testing.assert_allclose(rows, ref["logits_all"][[len(ids) - 1, 3, 0, 3]], atol=1e-3)
        eng.logits(ids[:8])
        eng.truncate(5)
        assert eng.n_past == 5
        tail = eng.append(ids[5:12], all_positions=True)
        np.testing.assert_allclose(tail, ref["logits_all"][5:12], atol=1e-3)
        with pytest.raises(ValueError, match="out of range"):
            eng.logits(ids, positions=[len(ids)])
        with pytest.raises(ValueError, match="not both"):
            eng.logits(ids, all_positions=True, positions=[0])
        with pytest.raises(ValueError, match="truncate"):
            eng.truncate(eng.n_past + 1)
        with pytest.raises(TypeError):
            eng.truncate(1.5)


def test_truncate_refuses_to_cut_into_the_images():
    from tests.families import meta, vision_engine

    with vision_engine("llava") as eng:
        img = str(DATA / "llava" / "image.png")
        eng.logits(meta("llava")["prompt"], images=[img])
        with pytest.raises(ValueError, match="images end at"):
            eng.truncate(3)
        eng.truncate(eng.n_past - 1)


def test_wilson_interval():
    # Wilson's interval is the set of p with |p_hat - p| <= z sqrt(p(1-p)/n): the roots of
    # (1 + z²/n) p² - (2 p_hat + z²/n) p + p_hat² = 0.
    z = 1.959964
    for k, n in [(45, 50), (3, 7), (0, 10), (10, 10)]:
        ph = k / n
        roots = np.sort(np.roots([1 + z * z / n, -(2 * ph + z * z / n), ph * ph]).real)
        assert wilson_interval(k, n) == pytest.approx(tuple(roots.clip(0, 1)), abs=1e-9)


@pytest.fixture(scope="module")
def toy_probes():
    return toy.as_probes(toy.probes(40, seed=21))


def test_metrics_on_the_toy_model(toy_engine, toy_probes):
    eng, probes = toy_engine, toy_probes
    exact = eng.evaluate(probes, metric="exact", progress=False)
    contains = eng.evaluate(probes, metric="contains", progress=False)
    choice = eng.evaluate(probes, metric="choice", progress=False)
    assert exact.n == contains.n == choice.n == len(probes)
    assert exact.accuracy >= 0.9 and choice.accuracy >= 0.9
    assert contains.correct[exact.correct].all()  # an exact answer is also contained
    # Re-computation: exact correctness from the generated text; the chosen choice is the
    # argmax of the prompt's last-position log-softmax over the choices' tokens.
    for i, p in enumerate(probes):
        got = eng.generate(p.prompt, images=[p.image], max_tokens=16)
        assert exact.correct[i] == (normalize_answer(got) == normalize_answer(p.answer))
        logits = eng.logits(p.prompt, images=[p.image])
        toks = [eng.multimodal_tokens(p.prompt + " " + c, [p.image])[-1] for c in p.choices]
        best = p.choices[int(np.argmax(_log_softmax(logits)[toks]))]
        assert normalize_answer(choice.answers[i]) == normalize_answer(best)
        assert choice.correct[i] == (normalize_answer(best) == normalize_answer(p.answer))
    lo, hi = exact.ci
    assert lo <= exact.accuracy <= hi


def test_image_embeddings_are_cached(toy_engine, toy_probes):
    eng = toy_engine
    p = toy_probes[0]
    before = eng.image_cache
    a = eng.logits(p.prompt, images=[p.image])
    b = eng.logits(p.prompt, images=[p.image])
    after = eng.image_cache
    assert after["hits"] >= before["hits"] + 1
    np.testing.assert_array_equal(a, b)  # a cache hit changes nothing
    eng.set_image_cache(0)
    try:
        np.testing.assert_array_equal(eng.logits(p.prompt, images=[p.image]), a)
        assert eng.image_cache["entries"] == 0
    finally:
        eng.set_image_cache(256 << 20)


def test_last_preprocessed_image_is_reused_only_for_the_same_pixels(toy_engine, toy_probes):
    # The engine keeps the last preprocessed image, keyed by a hash of its RGB8 bytes: a
    # one-pixel change must miss it and give the freshly computed views.
    from corehead.images import load_image

    eng = toy_engine
    img = load_image(toy_probes[0].image)
    other = img.copy()
    other[0, 0, 0] ^= 0x80
    eng.clear_image_cache()
    fresh_other = eng.preprocess_image(other)
    eng.clear_image_cache()
    first = eng.preprocess_image(img)
    again = eng.preprocess_image(img)  # served from the kept image
    changed = eng.preprocess_image(other)
    for a, b, c, d in zip(first, again, changed, fresh_other):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(c, d)
        assert not np.array_equal(a, c)


def test_ablation_curve_on_the_toy_model(toy_engine, toy_probes, tmp_path):
    eng, probes = toy_engine, toy_probes
    ranking = eng.rank_heads(probes, progress=False)
    curve = eng.ablation_curve(ranking, probes, fractions=(0.05, 0.1), seeds=3, progress=False)
    assert isinstance(curve, AblationCurve)
    n_heads = ranking.ram.size
    for r in curve.runs:
        assert r["k"] == max(1, math.ceil(r["fraction"] * n_heads - 1e-9)) == len(set(map(tuple, r["heads"])))
        if r["baseline"] == "top":
            assert r["heads"] == list(ranking.top(r["fraction"]))
    # Random head sets of one seed are nested across fractions.
    for s in range(3):
        sets = [r["heads"] for r in curve.runs if r["baseline"] == "random" and r["seed"] == s]
        assert sets[1][: len(sets[0])] == sets[0]
    # The paper's claim on the embedded model.
    assert curve.drop(0.05, "top") >= 30
    assert curve.drop(0.05, "bottom") <= 5
    # One configuration recomputed by hand.
    with eng.ablated(ranking.top(0.05), method="zero"):
        again = eng.evaluate(probes, metric=curve.metric, progress=False).accuracy
    assert again == pytest.approx(curve.base_accuracy - curve.drop(0.05, "top") / 100)
    assert "top" in curve.table() and "random" in curve.table()
    curve.plot(tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve.save(tmp_path / "curve.json")


def test_mean_ablation_over_probes_with_images(toy_engine, toy_probes):
    eng = toy_engine
    a, b = toy_probes[:1], toy_probes[1:3]
    n_a = len(eng.multimodal_tokens(a[0].prompt, [a[0].image]))
    n_b = sum(len(eng.multimodal_tokens(p.prompt, [p.image])) for p in b)
    both = eng.head_means(a + b)
    # The mean over a union is the count-weighted mean of the parts' means.
    np.testing.assert_allclose(both, (n_a * eng.head_means(a) + n_b * eng.head_means(b)) / (n_a + n_b),
                               rtol=1e-5, atol=1e-6)
    # Visual positions change the means: a probe without its image has other means.
    text_only = [type(a[0])(question=a[0].question, answer=a[0].answer, prompt=a[0].question)]
    assert np.abs(eng.head_means(text_only) - eng.head_means(a)).max() > 1e-3


def test_bad_evaluation_input(toy_engine, toy_probes):
    eng, probes = toy_engine, toy_probes[:2]
    with pytest.raises(ValueError, match="unknown metric"):
        eng.evaluate(probes, metric="bleu")
    with pytest.raises(ValueError, match="max_tokens"):
        eng.evaluate(probes, max_tokens=0)
    with pytest.raises(ValueError, match="no probes"):
        eng.evaluate([])
    with pytest.raises(TypeError, match="corehead.Probe"):
        eng.evaluate([{"question": "x"}])
    no_choices = [type(p)(image=p.image, question=p.question, answer=p.answer, bbox=p.bbox, prompt=p.prompt)
                  for p in probes]
    with pytest.raises(ValueError, match="choices"):
        eng.evaluate(no_choices, metric="choice")
    wrong = [type(p)(image=p.image, question=p.question, answer=" zebra", bbox=p.bbox, prompt=p.prompt,
                     choices=p.choices) for p in probes]
    with pytest.raises(ValueError, match="not among its choices"):
        eng.evaluate(wrong, metric="choice")
    info = eng.info
    ranking = HeadRanking(ram=np.zeros((info["n_layer"], info["n_head"])),
                          visual_mass=np.zeros((info["n_layer"], info["n_head"])), chance=0.1, n_probes=1,
                          n_head_kv=info["n_head_kv"])
    for kwargs, match in [({"fractions": (0.0,)}, "fractions"), ({"fractions": (1.5,)}, "fractions"),
                          ({"seeds": 0}, "seeds"), ({"method": "scramble"}, "unknown ablation method"),
                          ({"baselines": ("worst",)}, "unknown baseline")]:
        with pytest.raises(ValueError, match=match):
            eng.ablation_curve(ranking, probes, progress=False, **kwargs)
    other = HeadRanking(ram=np.zeros((2, 4)), visual_mass=np.zeros((2, 4)), chance=0.1, n_probes=1, n_head_kv=4)
    with pytest.raises(ValueError, match="head ranking is for a model"):
        eng.ablation_curve(other, probes, progress=False)
    with pytest.raises(TypeError, match="HeadRanking"):
        eng.ablation_curve([(0, 0)], probes, progress=False)


def _write_toy_probes(tmp_path: Path, n: int, seed: int) -> Path:
    import json

    lines = []
    for i, (item, p) in enumerate(zip(toy.probes(n, seed=seed), toy.as_probes(toy.probes(n, seed=seed)))):
        item["image"].save(tmp_path / f"{i}.png")
        lines.append({"image": f"{i}.png", "question": p.question, "prompt": p.prompt, "answer": p.answer,
                      "bbox": p.bbox, "choices": p.choices})
    path = tmp_path / "probes.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_cli_ablate(tmp_path, capsys):
    import json

    from corehead.cli import main as cli_main
    from corehead.models import default_model

    model, mmproj = default_model()
    probes = _write_toy_probes(tmp_path, 16, seed=31)
    common = ["-m", str(model), "--mmproj", str(mmproj), "--probes", str(probes), "-t", "2"]
    assert cli_main(["rank", *common, "-o", str(tmp_path / "heads.json")]) == 0
    rc = cli_main(["ablate", *common, "--heads", str(tmp_path / "heads.json"), "--fractions", "0.05,0.1",
                   "--seeds", "2", "--plot", str(tmp_path / "c.png"), "--json", str(tmp_path / "c.json")])
    assert rc == 0
    text = capsys.readouterr().out
    assert "unablated accuracy" in text and "random" in text
    saved = json.loads((tmp_path / "c.json").read_text())
    assert {r["baseline"] for r in saved["runs"]} == {"top", "bottom", "random"}
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    # A plain list of heads: one ablation against the unablated run.
    top = saved["runs"][0]["heads"]
    (tmp_path / "top.json").write_text(json.dumps(top))
    assert cli_main(["ablate", *common, "--heads", str(tmp_path / "top.json")]) == 0
    assert "drop:" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps([[0, 99]]))
    assert cli_main(["ablate", *common, "--heads", str(tmp_path / "bad.json")]) == 1
    assert "out of range" in capsys.readouterr().err
