"""Dataset-scale RAM ranking, evaluation and ablation curves on a Ray cluster.

    pip install 'corehead[ray]'

    from corehead import distributed
    ranking = distributed.rank_heads("model.gguf", probes, mmproj="mmproj.gguf", num_workers=8)
    curve = distributed.ablation_curve("model.gguf", ranking, probes, mmproj="mmproj.gguf", num_workers=8)

    # or keep the workers (and their loaded models) for several jobs:
    with distributed.WorkerPool("model.gguf", mmproj="mmproj.gguf", num_workers=8) as pool:
        ranking = pool.rank_heads(probes)
        curve = pool.ablation_curve(ranking, probes)

How it works:

- each Ray actor holds one :class:`corehead.Engine` (``engine_kwargs`` go to it; ``n_threads``
  defaults to the actor's ``num_cpus_per_worker``). Call ``ray.init(address=...)`` first to use a
  cluster; otherwise a local one is started. Model, mmproj and image paths must be readable
  on every node.
- probes are cut into chunks handed to whichever actor is free (two in flight per actor).
- ranking: each probe's RAM/VM partial sums (:func:`corehead.ram.score_probe`) are folded into
  the dataset sums in probe order, so the result is the single-process
  :meth:`Engine.rank_heads` up to float rounding (bit-identical when every worker computes the
  same per-probe scores). Evaluation and ablation curves gather each probe's answers and
  compute the accuracies exactly as the single-process code does.
- a probe that raises is recorded as a :class:`ProbeFailure` (its index in `probes`, the error)
  and left out; the others complete. The result carries the list as ``.failures`` (a
  HeadRanking also in ``params["failed_probes"]``), a warning names them, and
  ``on_error="raise"`` raises :class:`ProbeErrors` (holding the partial result) instead.
- a worker that dies (node lost, out of memory, killed) loses nothing: its chunks go back in the
  queue and run on another actor; a replacement actor is started (``max_restarts`` in all).
  A lost chunk of several probes is retried one probe per chunk, so a probe that brings its
  worker down is isolated and, after ``max_retries`` attempts, reported as a failure.
- method="mean" ablation: one actor computes the head means over ``reference`` (default: all
  probes) and every actor uses them.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from corehead.probes import Probe


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("corehead.distributed needs Ray: pip install 'corehead[ray]' (or pip install ray)") from None
    return ray


@dataclass(frozen=True)
class ProbeFailure:
    """A probe that could not be scored: its index in the probe list and the error."""

    index: int
    error: str  # the exception's type name ("WorkerLost" when its worker died every time)
    message: str

    def __str__(self) -> str:
        return f"probe {self.index}: {self.error}: {self.message}"


class ProbeErrors(RuntimeError):
    """Raised with ``on_error="raise"`` after all probes ran: ``.failures`` and ``.result`` (the
    result over the probes that succeeded, or None when none did)."""

    def __init__(self, failures: list[ProbeFailure], result=None) -> None:
        self.failures = failures
        self.result = result
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} probe(s) failed: " + "; ".join(map(str, failures[:5])) + more)


# --- the actor ------------------------------------------------------------------------------------


class _Worker:
    """One Engine in one Ray actor. Per-probe errors are caught and returned, never raised."""

    def __init__(self, model, mmproj, engine_kwargs: dict) -> None:
        from corehead.engine import Engine

        self.eng = Engine(model, mmproj, **engine_kwargs)

    def ready(self) -> dict:
        return {"pid": os.getpid(), "info": self.eng.info}

    def rank(self, chunk: list, query: str, only_correct: bool) -> list:
        from corehead.ram import score_probe

        out = []
        for i, probe in chunk:
            try:
                if not isinstance(probe, Probe):
                    raise TypeError(f"a {type(probe).__name__}, not a corehead.Probe")
                out.append((i, score_probe(self.eng, probe, query=query, check_answer=only_correct), None))
            except Exception as e:  # reported with the probe's index; the chunk goes on
                out.append((i, None, (type(e).__name__, str(e))))
        return out

    def head_means(self, reference) -> np.ndarray:
        return self.eng.head_means(reference, cached=True)

    def answer(self, chunk: list, metric: str, max_tokens: int, head_sets: list, method: str, means) -> list:
        """Per probe: [(answer, correct)] unablated, then with each head set ablated."""
        from corehead.evaluate import _answer, _prepare

        failed: dict[int, tuple] = {}
        items = {}
        for i, probe in chunk:
            try:
                items[i] = _prepare(self.eng, [probe], metric)[0]
            except Exception as e:
                failed[i] = (type(e).__name__, str(e))
        answers: dict[int, list] = {i: [] for i in items}
        for heads in [None, *head_sets]:
            ctx = nullcontext() if heads is None else self.eng.ablated(list(heads), method=method, means=means)
            with ctx:
                for i, item in items.items():
                    if i in failed:
                        continue
                    try:
                        answers[i].append(_answer(self.eng, item, metric, max_tokens))
                    except Exception as e:
                        failed[i] = (type(e).__name__, str(e))
        return [(i, None if i in failed else answers[i], failed.get(i)) for i, _ in chunk]


# --- the pool ---------------------------------------------------------------------------------------


class WorkerPool:
    """`num_workers` Ray actors, each with ``Engine(model, mmproj, **engine_kwargs)``.

    max_restarts: replacement actors started in all when actors die (default num_workers).
    max_retries: attempts per probe after its worker died (a lost chunk is retried probe by probe).
    ``stats`` counts chunks, lost workers and retried chunks of the last job.
    """

    def __init__(self, model=None, mmproj=None, num_workers: int = 2, num_cpus_per_worker: float = 1,
                 max_restarts: int | None = None, max_retries: int = 3, **engine_kwargs) -> None:
        ray = _ray()
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        if not isinstance(num_cpus_per_worker, (int, float)) or num_cpus_per_worker < 0:
            raise ValueError(f"num_cpus_per_worker must be >= 0, got {num_cpus_per_worker!r}")
        if not ray.is_initialized():
            ray.init()
        need, free = num_workers * num_cpus_per_worker, ray.available_resources().get("CPU", 0)
        if need > free:
            warnings.warn(f"the Ray cluster has {free:g} free CPUs and {num_workers} workers need {need:g}: they wait "
                          "for CPUs to free up (lower num_workers or num_cpus_per_worker)", stacklevel=2)
        engine_kwargs.setdefault("n_threads", max(1, int(num_cpus_per_worker)))
        self._args = (None if model is None else str(model), None if mmproj is None else str(mmproj), engine_kwargs)
        self._actor_class = ray.remote(num_cpus=num_cpus_per_worker, max_restarts=0)(_Worker)
        self.max_retries = int(max_retries)
        self._restarts_left = num_workers if max_restarts is None else int(max_restarts)
        self.stats: dict = {}
        self.actors = [self._actor_class.remote(*self._args) for _ in range(num_workers)]
        try:
            ready = ray.get([a.ready.remote() for a in self.actors])
        except Exception as e:
            self.shutdown()
            raise RuntimeError(f"the Ray workers could not load the model ({model}, mmproj={mmproj}): {e}") from e
        #: Engine.info of the model the workers hold.
        self.info: dict = ready[0]["info"]

    # -- lifetime --------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop the actors (their Engines are freed)."""
        ray = _ray()
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    # -- the work queue --------------------------------------------------------------------------
    def _lose(self, actor, error: Exception) -> None:
        if actor not in self.actors:
            return
        self.actors.remove(actor)
        self.stats["lost_workers"] += 1
        try:
            _ray().kill(actor)
        except Exception:
            pass
        if self._restarts_left > 0:
            self._restarts_left -= 1
            self.actors.append(self._actor_class.remote(*self._args))

    def _map(self, method: str, pairs: list, args: tuple, on_item: Callable, chunk_size: int | None,
             progress: bool, desc: str, callback: Callable | None) -> None:
        """Run ``actor.<method>(chunk, *args)`` over chunks of (index, probe) pairs on free actors;
        ``on_item(index, result, ProbeFailure | None)`` once per probe, in completion order."""
        ray = _ray()
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

        lost_errors = (RayActorError, WorkerCrashedError, ObjectLostError)
        n = len(pairs)
        if chunk_size is None:
            chunk_size = max(1, min(16, math.ceil(n / (4 * max(1, len(self.actors))))))
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        chunks = [pairs[k:k + chunk_size] for k in range(0, n, chunk_size)]
        queue = deque(range(len(chunks)))
        attempts: dict[int, int] = defaultdict(int)
        inflight: dict = {}  # ObjectRef -> (actor, chunk id)
        self.stats = {"chunks": len(chunks), "lost_workers": 0, "retried_chunks": 0}
        args_refs = tuple(ray.put(a) if isinstance(a, np.ndarray) else a for a in args)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc=desc, unit="probe")
        done = 0
        try:
            while queue or inflight:
                load = {id(a): 0 for a in self.actors}
                for actor, _ in inflight.values():
                    if id(actor) in load:
                        load[id(actor)] += 1
                for actor in sorted(self.actors, key=lambda a: load[id(a)]):
                    while queue and load[id(actor)] < 2:
                        cid = queue.popleft()
                        inflight[getattr(actor, method).remote(chunks[cid], *args_refs)] = (actor, cid)
                        load[id(actor)] += 1
                if not inflight:
                    raise RuntimeError("no Ray worker is left (all died and max_restarts is used up); "
                                       f"{len(queue)} chunk(s) not run")
                (ref,), _ = ray.wait(list(inflight), num_returns=1)
                actor, cid = inflight.pop(ref)
                chunk = chunks[cid]
                try:
                    out = ray.get(ref)
                except lost_errors as e:
                    self._lose(actor, e)
                    self.stats["retried_chunks"] += 1
                    attempts[cid] += 1
                    if len(chunk) > 1:  # retry probe by probe: isolates a probe that kills its worker
                        for pair in reversed(chunk):
                            chunks.append([pair])
                            attempts[len(chunks) - 1] = attempts[cid]
                            queue.appendleft(len(chunks) - 1)
                        continue
                    if attempts[cid] <= self.max_retries:
                        queue.appendleft(cid)
                        continue
                    out = [(chunk[0][0], None, ("WorkerLost", f"its worker died {attempts[cid]} times ({e})"))]
                except RayTaskError as e:  # not a per-probe error: a bug in the worker code
                    out = [(i, None, (type(e.cause).__name__ if e.cause else "RayTaskError", str(e))) for i, _ in chunk]
                for i, result, fail in out:
                    on_item(i, result, None if fail is None else ProbeFailure(i, *fail))
                done += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if callback is not None:
                    callback(done, n)
        finally:
            if bar is not None:
                bar.close()
            for ref in inflight:  # after an error or Ctrl-C: drop the queued work
                try:
                    ray.cancel(ref, force=False)
                except Exception:
                    pass

    @staticmethod
    def _pairs(probes) -> list:
        if isinstance(probes, Probe):
            probes = [probes]
        probes = list(probes)
        if not probes:
            raise ValueError("no probes given")
        return list(enumerate(probes))

    @staticmethod
    def _finish(result, failures: list[ProbeFailure], on_error: str):
        failures = sorted(failures, key=lambda f: f.index)
        if result is not None:
            result.failures = failures
        if failures:
            if on_error == "raise":
                raise ProbeErrors(failures, result)
            warnings.warn(f"{len(failures)} probe(s) failed and were left out: "
                          + "; ".join(map(str, failures[:5])) + (" …" if len(failures) > 5 else ""), stacklevel=3)
        return result

    @staticmethod
    def _check_on_error(on_error: str) -> None:
        if on_error not in ("report", "raise"):
            raise ValueError(f"on_error must be 'report' or 'raise', got {on_error!r}")

    # -- jobs ----------------------------------------------------------------------------------------
    def rank_heads(self, probes, query: str = "answer", only_correct: bool = False, progress: bool = True,
                   chunk_size: int | None = None, on_error: str = "report", callback: Callable | None = None):
        """:meth:`Engine.rank_heads` over the workers; returns a :class:`corehead.HeadRanking` with
        ``.failures``. callback(done, total) runs in the driver after each chunk."""
        from corehead.ram import HeadRanking, head_layers, model_identity

        if query not in ("answer", "last"):
            raise ValueError(f"query must be 'answer' or 'last', got {query!r}")
        self._check_on_error(on_error)
        pairs = self._pairs(probes)
        acc = _OrderedSum(only_correct)
        failures: list[ProbeFailure] = []

        def on_item(i, score, fail):
            if fail is not None:
                failures.append(fail)
            acc.add(i, score)

        self._map("rank", pairs, (query, bool(only_correct)), on_item, chunk_size, progress, "rank_heads", callback)
        if not acc.n:
            if len(failures) == len(pairs):
                raise ProbeErrors(sorted(failures, key=lambda f: f.index))
            raise ValueError("no probe left to average (only_correct=True and the model answered none correctly)")
        params = {"query": query, "only_correct": only_correct}
        if failures:
            params["failed_probes"] = [[f.index, f"{f.error}: {f.message}"] for f in sorted(failures,
                                                                                      key=lambda f: f.index)]
        result = HeadRanking(ram=acc.ram / acc.n, visual_mass=acc.vm / acc.n, chance=float(acc.chance / acc.n),
                             n_probes=acc.n, n_head_kv=self.info["n_head_kv"], model=model_identity(self.info),
                             params=params, layers=head_layers(self.info))
        return self._finish(result, failures, on_error)

    def _answers(self, pairs, metric, max_tokens, head_sets, method, means, chunk_size, progress, desc, callback):
        answers: dict[int, list] = {}
        failures: list[ProbeFailure] = []

        def on_item(i, result, fail):
            if fail is not None:
                failures.append(fail)
            else:
                answers[i] = result

        self._map("answer", pairs, (metric, max_tokens, head_sets, method, means), on_item, chunk_size, progress,
                  desc, callback)
        return answers, failures

    def evaluate(self, probes, metric: str = "exact", progress: bool = True, max_tokens: int = 16,
                 chunk_size: int | None = None, on_error: str = "report", callback: Callable | None = None):
        """:meth:`Engine.evaluate` (no head interventions) over the workers; an
        :class:`corehead.EvalReport` over the probes that ran, with ``.failures``."""
        from corehead.evaluate import EvalReport, _check_metric

        _check_metric(metric, max_tokens)
        self._check_on_error(on_error)
        pairs = self._pairs(probes)
        answers, failures = self._answers(pairs, metric, max_tokens, [], "zero", None, chunk_size, progress,
                                          "evaluate", callback)
        ok = sorted(answers)
        if not ok:
            raise ProbeErrors(sorted(failures, key=lambda f: f.index))
        report = EvalReport(metric, np.array([answers[i][0][1] for i in ok], dtype=bool),
                            [answers[i][0][0] for i in ok], [pairs[i][1].answer for i in ok])
        return self._finish(report, failures, on_error)

    def ablation_curve(self, ranking, probes, fractions=(0.01, 0.02, 0.05, 0.1, 0.2),
                       baselines=("top", "bottom", "random"), seeds: int = 5, method: str = "zero",
                       metric: str | None = None, reference=None, seed: int = 0, progress: bool = True,
                       max_tokens: int = 16, chunk_size: int | None = None, on_error: str = "report",
                       callback: Callable | None = None):
        """:meth:`Engine.ablation_curve` over the workers (same configurations, same random head
        sets); an :class:`corehead.AblationCurve` over the probes that ran, with ``.failures``."""
        from corehead.evaluate import AblationCurve, EvalReport, _check_metric, curve_configs, default_metric

        ray = _ray()
        info = self.info
        configs = curve_configs(ranking, info, fractions, baselines, seeds, method, seed)
        self._check_on_error(on_error)
        pairs = self._pairs(probes)
        plist = [p for _, p in pairs]
        metric = default_metric(plist, metric)
        _check_metric(metric, max_tokens)
        head_sets = sorted({tuple(sorted(h)) for *_, h in configs})
        means = None
        if method == "mean":
            from ray.exceptions import RayTaskError

            try:
                means = ray.get(self.actors[0].head_means.remote(reference if reference is not None else plist))
            except RayTaskError as e:
                raise RuntimeError(f"the head means for mean ablation failed: {e}") from e
        answers, failures = self._answers(pairs, metric, max_tokens, head_sets, method, means, chunk_size, progress,
                                          "ablation curve", callback)
        ok = sorted(answers)
        if not ok:
            raise ProbeErrors(sorted(failures, key=lambda f: f.index))
        base = EvalReport(metric, np.array([answers[i][0][1] for i in ok], dtype=bool),
                          [answers[i][0][0] for i in ok], [pairs[i][1].answer for i in ok])
        curve = AblationCurve(base.accuracy, len(ok), metric, method, info["n_layer"] * info["n_head"],
                              base_report=base)
        index = {h: j for j, h in enumerate(head_sets)}
        for frac, b, s, heads in configs:
            j = 1 + index[tuple(sorted(heads))]
            correct = np.array([answers[i][j][1] for i in ok], dtype=bool)
            # per-probe results too, for the curve's bootstrap intervals (as single-process)
            curve.runs.append({"fraction": frac, "baseline": b, "seed": s, "k": len(heads), "heads": heads,
                               "accuracy": float(correct.mean()), "correct": correct.tolist()})
        return self._finish(curve, failures, on_error)


class _OrderedSum:
    """RAM/VM/chance sums folded in probe order (as :func:`corehead.ram.reduce_scores` adds them),
    whatever order the chunks finish in; holds only the scores that arrive ahead of a gap."""

    def __init__(self, only_correct: bool) -> None:
        self.only_correct = only_correct
        self.next = 0
        self.pending: dict = {}
        self.ram = self.vm = None
        self.chance = 0.0
        self.n = 0

    def add(self, index: int, score) -> None:
        self.pending[index] = score
        while self.next in self.pending:
            s = self.pending.pop(self.next)
            self.next += 1
            if s is None or (self.only_correct and not s.correct):
                continue
            if self.ram is None:
                self.ram, self.vm = s.ram.astype(np.float64), s.visual_mass.astype(np.float64)
            else:
                self.ram = self.ram + s.ram
                self.vm = self.vm + s.visual_mass
            self.chance += s.chance
            self.n += 1


# --- one-call helpers ----------------------------------------------------------------------------------


def _pool_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k) for k in ("num_cpus_per_worker", "max_restarts", "max_retries") if k in kwargs}


def rank_heads(model, probes: Sequence[Probe], mmproj=None, num_workers: int = 2, query: str = "answer",
               only_correct: bool = False, progress: bool = True, chunk_size: int | None = None,
               on_error: str = "report", **engine_kwargs):
    """RAM ranking of `probes` on `num_workers` Ray actors (see the module docstring); the
    result equals single-process :meth:`Engine.rank_heads`. Other kwargs go to :class:`Engine`
    (and num_cpus_per_worker / max_restarts / max_retries to :class:`WorkerPool`)."""
    pool_kw = _pool_kwargs(engine_kwargs)
    with WorkerPool(model, mmproj, num_workers=num_workers, **pool_kw, **engine_kwargs) as pool:
        return pool.rank_heads(probes, query=query, only_correct=only_correct, progress=progress,
                               chunk_size=chunk_size, on_error=on_error)


def evaluate(model, probes: Sequence[Probe], mmproj=None, num_workers: int = 2, metric: str = "exact",
             progress: bool = True, max_tokens: int = 16, chunk_size: int | None = None, on_error: str = "report",
             **engine_kwargs):
    """:meth:`Engine.evaluate` of `probes` on `num_workers` Ray actors."""
    pool_kw = _pool_kwargs(engine_kwargs)
    with WorkerPool(model, mmproj, num_workers=num_workers, **pool_kw, **engine_kwargs) as pool:
        return pool.evaluate(probes, metric=metric, progress=progress, max_tokens=max_tokens, chunk_size=chunk_size,
                             on_error=on_error)


def ablation_curve(model, ranking, probes: Sequence[Probe], mmproj=None, num_workers: int = 2,
                   fractions=(0.01, 0.02, 0.05, 0.1, 0.2), baselines=("top", "bottom", "random"), seeds: int = 5,
                   method: str = "zero", metric: str | None = None, reference=None, seed: int = 0,
                   progress: bool = True, max_tokens: int = 16, chunk_size: int | None = None,
                   on_error: str = "report", **engine_kwargs):
    """:meth:`Engine.ablation_curve` of `probes` on `num_workers` Ray actors."""
    pool_kw = _pool_kwargs(engine_kwargs)
    with WorkerPool(model, mmproj, num_workers=num_workers, **pool_kw, **engine_kwargs) as pool:
        return pool.ablation_curve(ranking, probes, fractions=fractions, baselines=baselines, seeds=seeds,
                                   method=method, metric=metric, reference=reference, seed=seed, progress=progress,
                                   max_tokens=max_tokens, chunk_size=chunk_size, on_error=on_error)
