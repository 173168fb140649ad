"""Engines behind a bounded queue: one worker thread per Engine, requests served in arrival order.

An Engine serializes its native calls and keeps per-call state (KV cache, head interventions,
the sparse mode), so each Engine is owned by exactly one worker thread and runs one request at a
time; ``--parallel N`` means N Engines (N copies of the weights), each with its worker. The native
calls release the GIL, so the workers and the event loop run side by side.

No FastAPI here: the pool is plain threading, so it is usable (and testable) without a server.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class QueueFull(Exception):
    """Every Engine is busy and the waiting room is full (the server answers 503 + Retry-After)."""


class Job:
    """One request's work: ``fn(engine, job)`` runs on a worker thread; `cancel()` asks it to stop.

    The function checks ``job.cancelled`` (generation does it in its per-token callback, so a
    cancelled job stops within one token). A job cancelled while it still waits is never started.
    """

    _ids = itertools.count(1)

    def __init__(self, fn: Callable[[Any, Job], None], on_skipped: Callable[[], None] | None = None) -> None:
        self.id = next(Job._ids)
        self.fn = fn
        self.on_skipped = on_skipped  # called (once) when the job is dropped without running
        self._cancel = threading.Event()
        self.started = False
        self.failed = False  # set by a job function that caught its own error (counted as failed)
        self.tokens = 0  # tokens generated, counted by the job function
        self.tokens_after_cancel = 0  # callbacks that saw the cancel flag (native work done after it)
        self.delivered = False  # the job handed its complete result over before any cancel

    def cancel(self) -> None:
        self._cancel.set()

    def deliver(self) -> None:
        """Called by the job function just before it hands its result over. A cancel that comes
        later (a streaming client closes right after the last chunk) no longer makes it "cancelled"."""
        self.delivered = not self.cancelled

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


class EnginePool:
    """`engines` served by one worker thread each, fed from a FIFO of at most `max_queue` waiting jobs.

    `submit` either accepts a job (it will run exactly once, or be skipped if cancelled first) or
    raises :class:`QueueFull` right away; it never blocks.
    """

    def __init__(self, engines: Sequence[Any], max_queue: int = 64) -> None:
        if not engines:
            raise ValueError("the pool needs at least one Engine")
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0:
            raise ValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        self.engines = list(engines)
        self.max_queue = max_queue
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._running: set[Job] = set()
        self._closed = False
        self.stats = {"accepted": 0, "rejected": 0, "completed": 0, "failed": 0, "cancelled": 0, "skipped": 0,
                      "tokens": 0, "max_tokens_after_cancel": 0, "last_cancelled_tokens": 0}
        self._threads = [threading.Thread(target=self._work, args=(eng,), name=f"corehead-engine-{i}", daemon=True)
                         for i, eng in enumerate(self.engines)]
        for t in self._threads:
            t.start()

    # -- the front: called from the event loop -------------------------------------------------
    def _purge(self) -> None:
        """Drop waiting jobs whose client left, so they free their place at once (lock held)."""
        if any(j.cancelled for j in self._waiting):
            keep: deque[Job] = deque()
            for j in self._waiting:
                if j.cancelled:
                    self.stats["skipped"] += 1
                    if j.on_skipped:
                        j.on_skipped()
                else:
                    keep.append(j)
            self._waiting = keep

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise QueueFull("the server is shutting down")
            self._purge()
            # Capacity = one running job per Engine + max_queue waiting ones.
            if self._busy + len(self._waiting) >= len(self.engines) + self.max_queue:
                self.stats["rejected"] += 1
                raise QueueFull(f"all {len(self.engines)} engines are busy and {len(self._waiting)} requests wait")
            self._waiting.append(job)
            self.stats["accepted"] += 1
            self._cond.notify()

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            self._purge()
            return {"engines": len(self.engines), "busy": self._busy, "queued": len(self._waiting),
                    "max_queue": self.max_queue, **self.stats}

    def close(self, timeout: float = 10.0, close_engines: bool = True) -> None:
        """Cancel what waits, stop the workers (each after its running job), free the engines."""
        with self._cond:
            self._closed = True
            dropped = list(self._waiting)
            self._waiting.clear()
            for job in self._running:
                job.cancel()
            self._cond.notify_all()
        for job in dropped:
            job.cancel()
            if job.on_skipped:
                job.on_skipped()
        for t in self._threads:
            t.join(timeout)
        for eng in self.engines if close_engines else ():
            close = getattr(eng, "close", None)
            if close is not None:
                close()

    # -- the workers -----------------------------------------------------------------------------
    def _next(self) -> Job | None:
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            job = self._waiting.popleft()
            self._busy += 1
            self._running.add(job)
            return job

    @staticmethod
    def _outcome(job: Job) -> str:
        if job.failed:
            return "failed"
        return "cancelled" if job.cancelled and not job.delivered else "completed"

    def _work(self, engine: Any) -> None:
        while (job := self._next()) is not None:
            outcome = "skipped"
            try:
                if job.cancelled:  # the client left while the job waited
                    if job.on_skipped:
                        job.on_skipped()
                else:
                    job.started = True
                    job.fn(engine, job)
                    outcome = self._outcome(job)
            except BaseException:  # the job reports its own errors; the worker must survive anything
                outcome = "cancelled" if job.cancelled else "failed"
            finally:
                with self._cond:
                    self._busy -= 1
                    self._running.discard(job)
                    self.stats[outcome] += 1
                    self.stats["tokens"] += job.tokens
                    if outcome == "cancelled":
                        self.stats["last_cancelled_tokens"] = job.tokens
                        self.stats["max_tokens_after_cancel"] = max(self.stats["max_tokens_after_cancel"],
                                                                    job.tokens_after_cancel)
