"""The fixture families of tests/data, read from the folders themselves: every `tests/data/<family>/`
with a meta.json is a fixture (written by `python -m tools.fixtures.make`), a vision one when it
also has an mmproj. A new family's folder is picked up by every test that takes its families from
here; the references a test needs (ablation_ref.npz, sparse_ref.npz, ...) decide whether it runs
on a family (`with_file`)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def _fixtures() -> list[str]:
    return sorted(p.parent.name for p in DATA.glob("*/meta.json"))


def is_vision(family: str) -> bool:
    return (DATA / family / "mmproj-f32.gguf").is_file()


ALL = _fixtures()
TEXT = [f for f in ALL if not is_vision(f)]
VISION = [f for f in ALL if is_vision(f)]


def with_file(name: str, families: list[str]) -> list[str]:
    """The families of `families` whose folder holds `name` (e.g. "ablation_ref.npz")."""
    return [f for f in families if (DATA / f / name).is_file()]


def meta(family: str) -> dict:
    return json.loads((DATA / family / "meta.json").read_text())


@contextmanager
def vision_engine(family: str, dtype: str = "f32", n_threads: int = 2, **kwargs):
    """An Engine on a vision fixture's model + mmproj of `dtype`."""
    from corehead import Engine

    d = DATA / family
    with Engine(d / f"model-{dtype}.gguf", mmproj=d / f"mmproj-{dtype}.gguf", n_threads=n_threads, **kwargs) as eng:
        yield eng
