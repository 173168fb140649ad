"""CoRe-sparse KV cache (docs/architecture.md §6, corehead.sparse) on every multimodal fixture family.

Reference: the dense engine with the existing knockout intervention restricted to the queries
after each visual run (`sparse.masked_reference`: per-key query ranges on the knockout keys).
This is the definition of the sparse semantics written as masks on the full cache, so the test
checks that physically dropping the tokens (and gathering/scattering heads) changes nothing
but the memory. Because that reference goes through corehead's own mask code, one more test
compares the sparse logits with transformers (eager attention with the same edges cut,
tests/data/<family>/sparse_ref.npz from python -m tools.refs.sparse).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from corehead import Engine, sparse
from corehead.ram import HeadRanking, HeadSet
from tests.families import DATA, VISION, meta, vision_engine

REL = 1e-4
RESULTS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def report():
    """Numbers for the record: COREHEAD_SPARSE_REPORT=path.json writes them after the module."""
    yield
    import os

    if os.environ.get("COREHEAD_SPARSE_REPORT"):
        Path(os.environ["COREHEAD_SPARSE_REPORT"]).write_text(json.dumps(RESULTS, indent=1))


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module", params=VISION)
def fx(request):
    fam = request.param
    with vision_engine(fam) as eng:
        yield fam, eng, meta(fam)["prompt"], str(DATA / fam / "image.png")


def prompts(eng: Engine, prompt: str, img: str) -> list[tuple[str, list[str]]]:
    """One image (the fixture prompt), two images with text between them, and four "frames"
    straight after each other (adjacent runs of visual tokens) followed by a question."""
    m = eng.image_marker
    return [(prompt, [img]),
            (prompt.replace(m, f"{m} and then {m}"), [img, img]),
            (prompt.replace(m, m * 4), [img] * 4)]


def head_layers(info: dict) -> list[int]:
    """The layers with heads: every layer, or a hybrid model's (qwen35) attention layers."""
    return list(info["attention_layers"])


def head_sets(info: dict) -> list[list[tuple[int, int]]]:
    """Query heads: one KV head CoRe in the first layer only; a different KV head in each layer."""
    g = info["n_head"] // info["n_head_kv"]
    layers = head_layers(info)
    return [[(layers[0], 0)], [(layer, ((i + 1) % info["n_head_kv"]) * g) for i, layer in enumerate(layers)]]


def all_heads(info: dict) -> list[tuple[int, int]]:
    return [(layer, h) for layer in head_layers(info) for h in range(info["n_head"])]


def decode_steps(eng: Engine, tokens=(7, 9, 11)) -> list[np.ndarray]:
    """Logits of single-token decode steps after the current prompt."""
    return [eng._native().append([t]) for t in tokens]


def test_all_heads_core_is_bit_identical_to_dense(fx):
    fam, eng, prompt, img = fx
    before = eng.logits(prompt, images=[img], all_positions=True)
    for i, (pr, imgs) in enumerate(prompts(eng, prompt, img)):
        dense = eng.logits(pr, images=imgs, all_positions=True)
        dense_steps = decode_steps(eng)
        dense_ids = eng.generate_ids(pr, images=imgs, max_tokens=8, stop_at_eog=False)
        with eng.sparse(all_heads(eng.info)):
            got = eng.logits(pr, images=imgs, all_positions=True)
            steps = decode_steps(eng)
            ids = eng.generate_ids(pr, images=imgs, max_tokens=8, stop_at_eog=False)
            text = eng.generate(pr, images=imgs, max_tokens=8) if i == 0 else None
        assert np.array_equal(got, dense)
        assert all(np.array_equal(a, b) for a, b in zip(steps, dense_steps))
        assert ids == dense_ids
        if text is not None:
            assert text == eng.generate(pr, images=imgs, max_tokens=8)
    # leaving the block restores the dense cache: bit-identical to the dense result taken before
    assert np.array_equal(eng.logits(prompt, images=[img], all_positions=True), before)


def test_sparse_matches_transformers_with_the_edges_blocked(fx):
    """The reference that shares no code with corehead's masks: transformers eager attention with
    -inf on the edges (queries after each visual run -> that run's keys) of every query head of a
    non-CoRe KV head (python -m tools.refs.sparse). Same tolerance as the knockout parity test."""
    fam, eng, prompt, img = fx
    ref = np.load(DATA / fam / "sparse_ref.npz")
    group = eng.info["n_head"] // eng.info["n_head_kv"]
    core = [(layer, int(kv) * group) for layer, kv in zip(head_layers(eng.info), ref["core_kv"])]
    # under KV sharing (gemma4) a KV head is CoRe for every layer reading it when any of them lists it
    kept = set(sparse.core_kv_heads(core, eng.info))
    src = sparse.kv_source_layers(eng.info)
    assert {(layer, h) for layer in head_layers(eng.info) for h in range(eng.info["n_head"])
            if (src[layer], h // group) not in kept} == set(map(tuple, ref["knocked"]))
    with eng.sparse(core, sink=int(ref["sink"].item())):
        got = eng.logits(prompt, images=[img], all_positions=True)
    want = ref["logits_all"]
    assert rel_diff(eng.logits(prompt, images=[img], all_positions=True), want) > 1e-2  # the cut edges matter
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()
    RESULTS.setdefault("vs_transformers", {})[fam] = rel_diff(got, want)


def test_masked_reference_and_ablated_nest_in_both_orders(fx):
    """Intervention blocks replace the current interventions and give them back on leaving, in
    whichever order `masked_reference` and `ablated` are nested."""
    fam, eng, prompt, img = fx
    heads, zeroed = head_sets(eng.info)[1], [(head_layers(eng.info)[0], 1)]

    def run():
        return eng.logits(prompt, images=[img], all_positions=True)

    dense = run()
    with sparse.masked_reference(eng, heads, prompt, [img]):
        masked = run()
    with eng.ablated(zeroed):
        ablated = run()
    assert rel_diff(masked, dense) > 1e-3 and rel_diff(ablated, dense) > 1e-6
    with sparse.masked_reference(eng, heads, prompt, [img]):
        with eng.ablated(zeroed):
            assert np.array_equal(run(), ablated)
        assert np.array_equal(run(), masked)
    assert np.array_equal(run(), dense)
    with eng.ablated(zeroed):
        with sparse.masked_reference(eng, heads, prompt, [img]):
            assert np.array_equal(run(), masked)
        assert np.array_equal(run(), ablated)
    assert np.array_equal(run(), dense)
    assert eng.active_interventions == ([], [], [], [])


@pytest.mark.parametrize("sink", [0, 4])
def test_logits_equal_dense_with_visual_keys_masked_after_the_image(fx, sink):
    fam, eng, prompt, img = fx
    worst = 0.0
    for heads in head_sets(eng.info):
        for pr, imgs in prompts(eng, prompt, img):
            with eng.sparse(heads, sink=sink):
                got = eng.logits(pr, images=imgs, all_positions=True)
                steps = decode_steps(eng)
                ids = eng.generate_ids(pr, images=imgs, max_tokens=6, stop_at_eog=False)
            with sparse.masked_reference(eng, heads, pr, imgs, sink=sink):
                want = eng.logits(pr, images=imgs, all_positions=True)
                want_steps = decode_steps(eng)
                want_ids = eng.generate_ids(pr, images=imgs, max_tokens=6, stop_at_eog=False)
            # the reference really differs from the dense model (the mask matters)
            assert rel_diff(eng.logits(pr, images=imgs, all_positions=True), want) > 1e-3
            d = max(rel_diff(got, want), *(rel_diff(a, b) for a, b in zip(steps, want_steps)))
            assert d <= REL, (heads, len(imgs))
            assert ids == want_ids
            worst = max(worst, d)
    RESULTS.setdefault("max_rel_diff", {})[f"{fam} sink={sink}"] = worst


@pytest.mark.parametrize("keep", ["first", "last"])
def test_budget_tokens_match_masked_reference(fx, keep):
    """With a positional choice of the budget tokens (visual_keep), decode steps equal the dense
    reference in which the kept tokens are masked only for the rest of the prompt. Exercises the
    compaction that moves kept rows (keep='last', text after the image) and per-head masks."""
    fam, eng, prompt, img = fx
    heads = head_sets(eng.info)[1]
    for pr, imgs in prompts(eng, prompt, img)[:2]:
        with eng.sparse(heads, visual_budget=3, visual_keep=keep):
            got = eng.logits(pr, images=imgs, all_positions=True)
            steps = decode_steps(eng)
        with sparse.masked_reference(eng, heads, pr, imgs, visual_budget=3, keep=keep):
            want = eng.logits(pr, images=imgs, all_positions=True)
            want_steps = decode_steps(eng)
        assert rel_diff(got, want) <= REL
        assert max(rel_diff(a, b) for a, b in zip(steps, want_steps)) <= REL


def test_snapkv_budget_prefill_and_memory(fx):
    """SnapKV budget: the prompt itself is computed as with no budget (the chosen tokens only
    come back for decoding), and the cache holds exactly the budget on top of the formula."""
    fam, eng, prompt, img = fx
    info = eng.info
    heads = head_sets(info)[1]
    pr, imgs = prompts(eng, prompt, img)[1]
    with eng.sparse(heads):
        base = eng.logits(pr, images=imgs)
    for budget in (1, 5):
        with eng.sparse(heads, visual_budget=budget):
            assert rel_diff(eng.logits(pr, images=imgs), base) <= 1e-5  # more masked keys: other sums
            st = eng.kv_stats()
            ids = eng.generate_ids(pr, images=imgs, max_tokens=4, stop_at_eog=False)
            after = eng.kv_stats()
        n = len(eng.multimodal_tokens(pr, imgs))
        vis = eng.visual_token_positions(pr, imgs)
        kv = sparse.core_kv_heads(heads, info)
        assert st["bytes"] == sparse.expected_kv_bytes(info, kv, n, vis, 4, budget, len(imgs), 4)
        assert after["bytes"] == sparse.expected_kv_bytes(info, kv, n + len(ids) - 1, vis, 4, budget, len(imgs), 4)


def test_kv_stats_equal_the_formula(fx):
    fam, eng, prompt, img = fx
    info = eng.info
    bpv = 4  # f32 model files -> f32 KV cache
    checked = []
    for heads in head_sets(info)[1:]:
        kv = sparse.core_kv_heads(heads, info)
        for pr, imgs in prompts(eng, prompt, img):
            vis = eng.visual_token_positions(pr, imgs)
            n = len(eng.multimodal_tokens(pr, imgs))
            for sink in (0, 4):
                with eng.sparse(heads, sink=sink):
                    eng.logits(pr, images=imgs)
                    st = eng.kv_stats()
                    ids = eng.generate_ids(pr, images=imgs, max_tokens=5, stop_at_eog=False)
                    after = eng.kv_stats()
                want = sparse.expected_kv_bytes(info, kv, n, vis, sink, 0, 0, bpv)
                assert st["mode"] == "sparse" and st["bytes"] == want
                assert after["bytes"] == sparse.expected_kv_bytes(info, kv, n + len(ids) - 1, vis, sink, 0, 0, bpv)
                g = st["groups"]
                assert g["full"]["tokens"] == n
                assert g["compact"]["tokens"] == n - len(vis) + int((np.asarray(vis) < sink).sum())
                assert g["full"]["kv_heads"] == len(kv)
                # a layer reading another layer's K/V (KV sharing) holds none: each KV set counts once
                n_sets = len(sparse.kv_layers(info)) * info["n_head_kv"]
                assert g["full"]["kv_heads"] + g["compact"]["kv_heads"] == n_sets
                checked.append((st["bytes"], want))
    eng.logits(prompt, images=[img])
    dense = eng.kv_stats()
    assert dense["mode"] == "dense"
    n = len(eng.multimodal_tokens(prompt, [img]))
    assert dense["bytes"] == sparse.dense_kv_bytes(info, n, bpv)
    if sparse.kv_layers(info) == list(range(info["n_layer"])) and len(set(sparse.layer_head_dims(info))) == 1:
        assert dense["bytes"] == n * info["n_layer"] * info["n_head_kv"] * info["head_dim"] * 2 * bpv
    RESULTS.setdefault("kv_stats", {})[fam] = checked


def test_sparse_memory_is_allocated_for_what_it_holds(fx):
    """Many frames: the compact part is sized for text + one run + one batch, not for every visual token
    (a batch may cross runs: the runs that end in it leave at its commit)."""
    fam, eng, prompt, img = fx
    info = eng.info
    m = eng.image_marker
    pr, imgs = prompt.replace(m, m * 8), [img] * 8
    n = len(eng.multimodal_tokens(pr, imgs))
    n_vis = len(eng.visual_token_positions(pr, imgs))
    with Engine(info["path"], mmproj=info["vision"]["path"], n_threads=2, n_ctx=n + 16) as dense_eng:
        dense_eng.logits(pr, images=imgs)
        dense = dense_eng.kv_stats()
    n_batch = 24  # small next to the 8 images' tokens, so that the bound below says something
    with Engine(info["path"], mmproj=info["vision"]["path"], n_threads=2, n_ctx=n + 16, n_batch=n_batch,
                core_heads=head_sets(info)[0]) as sp:
        sp.logits(pr, images=imgs)
        st = sp.kv_stats()
    assert st["bytes"] < dense["bytes"]
    assert st["allocated_bytes"] < dense["allocated_bytes"]
    # the compact part is sized for the text (+ generated tokens), the sinks, the longest chunk and a batch
    sizes = [len(eng.visual_token_boxes(img))] * 8
    longest = max(b - a for a, b in sparse.visual_runs(eng.visual_token_positions(pr, imgs), sizes))
    assert longest < n_vis
    assert st["groups"]["compact"]["allocated_bytes"] <= (n + 16 - n_vis + longest + 4 + n_batch) * \
        st["groups"]["compact"]["kv_heads"] * info["head_dim"] * 2 * 4


def test_bad_input(fx, tmp_path):
    fam, eng, prompt, img = fx
    info = eng.info
    first = head_layers(info)[0]  # (first, h): a head of the first layer with heads
    with pytest.raises(ValueError, match="empty"):
        with eng.sparse([]):
            pass
    with pytest.raises(ValueError, match="out of range"):
        with eng.sparse([(info["n_layer"], 0)]):
            pass
    with pytest.raises(ValueError, match="larger than image"):
        with eng.sparse([(first, 0)], visual_budget=10_000):
            eng.logits(prompt, images=[img])
    with pytest.raises(ValueError):
        with eng.sparse([(first, 0)], visual_budget=-1):
            pass
    with pytest.raises(TypeError):
        with eng.sparse([(first, 0)], sink=1.5):
            pass
    with pytest.raises(ValueError, match="visual_keep"):
        with eng.sparse([(first, 0)], visual_budget=1, visual_keep="middle"):
            pass
    with pytest.raises(ValueError, match="visual_keep must be 'snapkv', 'first' or 'last'"):  # the native check
        with eng.kv_mode([(first, 0)], visual_budget=1, visual_keep="middle"):
            pass
    # head files made for another model
    other = dict(info, n_layer=info["n_layer"] + 1, name="another-model")
    sparse.save_heads(tmp_path / "other.json", [(first, 0)], other)
    with pytest.raises(ValueError, match="another model"):
        with eng.sparse(tmp_path / "other.json"):
            pass
    with pytest.raises(ValueError, match="another model"):
        Engine(info["path"], mmproj=info["vision"]["path"], core_heads=tmp_path / "other.json")
    ranking = HeadRanking(ram=np.ones((info["n_layer"], info["n_head"] * 2)), visual_mass=np.ones((info["n_layer"],
                          info["n_head"] * 2)), chance=0.1, n_probes=1, n_head_kv=info["n_head_kv"])
    ranking.save(tmp_path / "ranking.json")
    with pytest.raises(ValueError, match="model with"):
        Engine(info["path"], mmproj=info["vision"]["path"], core_heads=tmp_path / "ranking.json")
    with pytest.raises(ValueError, match="another model"):
        with eng.sparse(HeadSet([(first, 0)], n_head=info["n_head"] * 2, n_head_kv=info["n_head_kv"])):
            pass
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ValueError, match="head file"):
        with eng.sparse(tmp_path / "junk.json"):
            pass
    # taps and knockouts need the dense cache; the engine stays usable
    with eng.sparse([(first, 0)]):
        with pytest.raises(ValueError, match="dense KV cache"):
            eng.attention(prompt, images=[img])
        with pytest.raises(ValueError, match="dense KV cache"):
            with eng.ablated([(first, 1)], method="knockout"):
                pass
        eng.logits(prompt, images=[img])
    assert eng.kv_stats()["mode"] == "dense"
    # a head file saved for this model round-trips
    sparse.save_heads(tmp_path / "mine.json", [(first, 0)], info)
    with eng.sparse(tmp_path / "mine.json"):
        assert eng.kv_stats()["groups"]["full"]["kv_heads"] == 1


def test_toy_accuracy_sparse_vs_dense():
    """On the trained toy VLM: CoRe heads = top 10% of query heads by RAM on ranking probes;
    greedy accuracy on held-out probes with the sparse cache >= 98% of dense."""
    from corehead import models, toy
    from corehead.ram import normalize_answer

    model, mmproj = models.default_model()
    if "toy" not in model.name:
        pytest.skip("the trained toy model is not in the package")
    with Engine(model, mmproj=mmproj, n_threads=2) as eng:
        ranking = eng.rank_heads(toy.as_probes(toy.probes(48, seed=11), eng.image_marker), progress=False)
        heads = ranking.top(0.10)
        held_out = toy.as_probes(toy.probes(96, seed=3), eng.image_marker)
        images = [p.image for p in held_out]

        def accuracy() -> float:
            return float(np.mean([normalize_answer(eng.generate(p.prompt, images=[im], max_tokens=4))
                                  == normalize_answer(p.answer) for p, im in zip(held_out, images)]))

        dense = accuracy()
        with eng.sparse(heads):
            sp = accuracy()
            st = eng.kv_stats()
    RESULTS["toy"] = {"dense": dense, "sparse": sp, "core_query_heads": len(heads),
                      "core_kv_heads": st["groups"]["full"]["kv_heads"]}
    print(f"toy accuracy dense {dense:.3f} sparse {sp:.3f} ({len(heads)} CoRe query heads)")
    assert dense >= 0.9
    assert sp >= 0.98 * dense
    assert math.isfinite(sp)


def test_cli_run_with_core_heads(tmp_path, capsys):
    from corehead import cli

    d = DATA / "llava"
    meta = json.loads((d / "meta.json").read_text())
    model, mmproj, img = str(d / "model-f32.gguf"), str(d / "mmproj-f32.gguf"), str(d / "image.png")
    with Engine(model, mmproj=mmproj, n_threads=2) as eng:
        sparse.save_heads(tmp_path / "heads.json", [(0, 0), (1, 3)], eng.info)
        with eng.sparse(tmp_path / "heads.json"):
            want = eng.generate(meta["prompt"], images=[img], max_tokens=6)
        with eng.sparse(tmp_path / "heads.json", visual_budget=2, visual_keep="last"):
            want_last = eng.generate(meta["prompt"], images=[img], max_tokens=6)
    argv = ["run", "-m", model, "--mmproj", mmproj, "--image", img, "-p", meta["prompt"], "-n", "6", "-t", "2",
            "--core-heads", str(tmp_path / "heads.json")]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out == want + "\n"
    assert cli.main(argv + ["--visual-budget", "2", "--visual-keep", "last"]) == 0
    assert capsys.readouterr().out == want_last + "\n"
    assert cli.main(argv + ["--visual-budget", "100000"]) == 1
    assert "larger than image" in capsys.readouterr().err
    (tmp_path / "empty.json").write_text(json.dumps({"format": sparse.HEADSET_FORMAT, "heads": []}))
    assert cli.main(argv[:-1] + [str(tmp_path / "empty.json")]) == 1
    assert "empty" in capsys.readouterr().err


def test_cli_bench_dense_vs_sparse(tmp_path, capsys):
    # `corehead bench --core-heads`: both modes run, and the KV bytes it prints for the sparse
    # cache are what kv_stats() reports after the same generation (fewer than dense).
    from corehead import cli

    d = DATA / "llava"
    model, mmproj, img = str(d / "model-f32.gguf"), str(d / "mmproj-f32.gguf"), str(d / "image.png")
    with Engine(model, mmproj=mmproj, n_threads=2) as eng:
        sparse.save_heads(tmp_path / "heads.json", [(0, 0)], eng.info)
    out = tmp_path / "bench.json"
    argv = ["bench", "-m", model, "--mmproj", mmproj, "--image", img, "-n", "5", "--reps", "1", "-t", "2",
            "--core-heads", str(tmp_path / "heads.json"), "--json", str(out)]
    assert cli.main(argv) == 0
    rows = {r["mode"]: r for r in json.loads(out.read_text())}
    assert set(rows) == {"dense", "sparse"}
    with Engine(model, mmproj=mmproj, n_threads=2, core_heads=tmp_path / "heads.json") as eng:
        eng.generate_ids("Describe what you see in detail.", max_tokens=5, stop_at_eog=False, images=[img])
        assert rows["sparse"]["kv_bytes"] == eng.kv_stats()["bytes"]
    assert rows["sparse"]["kv_bytes"] < rows["dense"]["kv_bytes"]
    assert all(r["decode_tok_s"] > 0 and r["ttft_s"] > 0 for r in rows.values())
    assert "sparse" in capsys.readouterr().out
    assert cli.main(["bench", "-m", model, "--reps", "0"]) == 1


def test_toy_multi_image_accuracy_sparse_vs_dense():
    """Several images in one prompt, the question about one (distractors before / after it):
    CoRe heads = top 10% by RAM on the demo's 100 single-image ranking probes; greedy accuracy on
    600 fixed multi-image probes (2-4 images) with the sparse cache (each image prefilled densely,
    then only CoRe heads keep its tokens) >= 98% of dense, and dense far above chance (1/8 .. 1/6)."""
    from corehead import models, toy

    model, mmproj = models.default_model()
    if "toy" not in model.name:
        pytest.skip("the trained toy model is not in the package")
    with Engine(model, mmproj=mmproj, n_threads=2) as eng:
        ranking = eng.rank_heads(toy.as_probes(toy.probes(100, seed=101), eng.image_marker), progress=False)
        items = toy.multi_image_probes(600, seed=505, n_images=(2, 4))
        dense = toy.multi_image_accuracy(eng, items)
        with eng.sparse(ranking.top(0.10)):
            sp = toy.multi_image_accuracy(eng, items)
    assert {len(it["images"]) for it in items} == {2, 3, 4}
    assert {it["target"] for it in items} == {0, 1, 2, 3}
    print(f"multi-image toy accuracy: dense {dense} / sparse {sp}")
    assert dense.accuracy >= 0.85  # chance is <= 1/6
    assert sp.accuracy >= 0.98 * dense.accuracy
