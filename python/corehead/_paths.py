"""Argument checks shared by the Python entry points."""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np


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


def check_int(value, what: str, lo: int, hi: int) -> int:
    """An int argument in [lo, hi] (bools and floats refused) with a message naming it."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be between {lo} and {hi}, got {value}")
    return value


def check_real(value, what: str) -> float:
    """A real-number argument (int, float or a numpy scalar; not bool) as float."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    return float(value)


def check_text(value, what: str) -> str:
    """A str argument that can be encoded as UTF-8 (what the native side takes)."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{what} is not valid Unicode ({e.reason} at index {e.start}); remove lone surrogates "
                         "or decode the input with errors='replace'") from None
    return value
