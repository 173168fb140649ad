"""Progress bars inside one long call: the vision passes and prefill forward passes of a prompt.

A probe of a long visual context (many images, a video, 8k-32k tokens) takes minutes; the outer
bar of :func:`corehead.rank_heads` only moves once per probe. :func:`prompt_progress` installs the
engine's progress callback (``_core.Engine.set_progress``, called between passes with the GIL
held) and shows a tqdm bar per phase once there is more than one pass to wait for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corehead.engine import Engine

_UNITS = {"encode": "image", "prefill": "tok"}


@contextlib.contextmanager
def prompt_progress(eng: Engine, desc: str, enabled: bool = True, position: int = 1) -> Iterator[None]:
    """While the block runs, show `desc`'s encode and prefill progress under the outer bar
    (`position`); bars close (and vanish) when the block ends. A no-op when not `enabled`."""
    if not enabled:
        yield
        return
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def report(phase: str, done: int, total: int) -> None:
        bar = bars.get(phase)
        if bar is None:
            # One pass is over before the first report: a bar only for work of several passes.
            if done >= total:
                return
            bar = bars[phase] = tqdm(total=total, desc=f"{desc} {phase}", unit=_UNITS.get(phase, "it"),
                                     leave=False, position=position, dynamic_ncols=True)
        bar.update(done - bar.n)

    core = eng._native()
    core.set_progress(report)
    try:
        yield
    finally:
        core.set_progress(None)
        for bar in bars.values():
            bar.close()
