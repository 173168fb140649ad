"""Argument checks shared by the Python entry points."""

from __future__ import annotations

import os
from pathlib import Path


def as_path(value, what: str) -> str:
    """A filesystem path argument as str; raises TypeError / FileNotFoundError with context."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), got {type(value).__name__}")
    path = os.fspath(value)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{what} is an empty path")
    if "\x00" in path:
        raise ValueError(f"{what} contains a NUL character")
    if not Path(path).exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path
