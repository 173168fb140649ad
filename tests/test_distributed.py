"""corehead.distributed on a local Ray cluster (ray.init(num_cpus=2)) with the llava fixture:
results equal the single-process ones; a failing probe is reported by index; a killed worker's
chunks are retried on another actor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'corehead[ray]'); "
                                         "it is not in the test extra to keep CI short")

from corehead import Engine, Probe  # noqa: E402
from corehead import distributed as dist  # noqa: E402

DATA = Path(__file__).parent / "data" / "llava"
MODEL, MMPROJ = DATA / "model-f32.gguf", DATA / "mmproj-f32.gguf"
PROMPT = json.loads((DATA / "meta.json").read_text())["prompt"]
BOXES = ([0, 0, 48, 32], [40, 20, 96, 64], [10, 5, 30, 60], [0, 0, 96, 64], [60, 0, 96, 20], [20, 30, 70, 50])


def probes(boxes=BOXES) -> list[Probe]:
    return [Probe(image=str(DATA / "image.png"), question="", prompt=PROMPT, answer=" red", bbox=b,
                  choices=[" red", " blue", " green"]) for b in boxes]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=100 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool(local_ray):
    with dist.WorkerPool(MODEL, MMPROJ, num_workers=2, n_threads=1) as p:
        yield p


@pytest.fixture(scope="module")
def single():
    with Engine(MODEL, mmproj=MMPROJ, n_threads=1) as eng:
        yield eng


def assert_same_ranking(got, want):
    np.testing.assert_allclose(got.ram, want.ram, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.visual_mass, want.visual_mass, rtol=0, atol=1e-6)
    assert abs(got.chance - want.chance) < 1e-9
    assert got.n_probes == want.n_probes and got.n_head_kv == want.n_head_kv and got.model == want.model
    assert got.top(0.1) == want.top(0.1)


def test_two_workers_equal_single_process(local_ray, single):
    want = single.rank_heads(probes(), progress=False)
    got = dist.rank_heads(MODEL, probes(), mmproj=MMPROJ, num_workers=2, n_threads=1, progress=False, chunk_size=2)
    assert_same_ranking(got, want)
    assert got.failures == [] and "failed_probes" not in got.params
    assert got.ram.std() > 0  # the heads really differ: the comparison is not between constants


def test_killed_worker_is_retried_on_another_actor(pool, single):
    want = single.rank_heads(probes(), query="last", progress=False)
    killed = []

    def kill_one(done, total):  # after the first chunk: the other actor still has chunks queued
        if not killed:
            killed.append(pool.actors[-1])
            ray.kill(pool.actors[-1])

    got = pool.rank_heads(probes(), query="last", progress=False, chunk_size=1, callback=kill_one)
    assert killed and killed[0] not in pool.actors
    assert pool.stats["lost_workers"] == 1 and pool.stats["retried_chunks"] >= 1
    assert len(pool.actors) == 2  # a replacement was started
    assert_same_ranking(got, want)
    assert got.failures == []


def test_failing_probe_is_reported_by_index(pool, single):
    boxes = list(BOXES)
    boxes[3] = [50, 50, 10, 10]  # inverted: the probe raises ValueError when scored
    with pytest.warns(UserWarning, match="probe 3: ValueError"):
        got = pool.rank_heads(probes(boxes), query="last", progress=False, chunk_size=2)
    (fail,) = got.failures
    assert (fail.index, fail.error) == (3, "ValueError") and "inverted" in fail.message
    assert got.params["failed_probes"][0][0] == 3
    want = single.rank_heads(probes(boxes[:3] + boxes[4:]), query="last", progress=False)
    assert_same_ranking(got, want)  # the other five, none lost
    with pytest.raises(dist.ProbeErrors, match="probe 3") as e:
        pool.rank_heads(probes(boxes), query="last", progress=False, on_error="raise")
    assert e.value.result.n_probes == 5


def test_evaluate_and_ablation_curve_equal_single_process(pool, single):
    ps = probes()
    want = single.evaluate(ps, metric="choice", progress=False)
    got = pool.evaluate(ps, metric="choice", progress=False, chunk_size=2)
    assert got.answers == want.answers and got.correct.tolist() == want.correct.tolist()

    ranking = single.rank_heads(ps, query="last", progress=False)
    kw = dict(fractions=(0.125, 0.5), seeds=2, metric="choice", progress=False)
    want = single.ablation_curve(ranking, ps, **kw)
    got = pool.ablation_curve(ranking, ps, chunk_size=4, **kw)
    assert got.base_report.answers == want.base_report.answers
    assert [(r["fraction"], r["baseline"], r["seed"], r["heads"], r["accuracy"]) for r in got.runs] == \
        [(r["fraction"], r["baseline"], r["seed"], r["heads"], r["accuracy"]) for r in want.runs]
    assert got.table() == want.table()


def test_mean_ablation_uses_the_same_means(pool, single):
    ps = probes()[:3]
    ranking = single.rank_heads(ps, query="last", progress=False)
    kw = dict(fractions=(0.5,), baselines=("top",), method="mean", metric="choice", progress=False)
    want = single.ablation_curve(ranking, ps, **kw)
    got = pool.ablation_curve(ranking, ps, **kw)
    assert [r["accuracy"] for r in got.runs] == [r["accuracy"] for r in want.runs]


def test_model_that_does_not_load(local_ray, tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF but not really")
    with pytest.raises(RuntimeError, match="could not load the model"):
        # num_cpus_per_worker=0: the module's pool holds both CPUs of the local cluster
        dist.WorkerPool(bad, num_workers=1, max_restarts=0, num_cpus_per_worker=0)
