"""What this install of corehead runs on: ``corehead.system_info()`` / ``corehead info --system``.

A native build (the default for ``pip install .``) tunes ggml for the machine it was built on; a
portable build (``COREHEAD_PORTABLE=ON``, what published wheels use) ships one ggml CPU module per
instruction-set level and ggml loads the best one this CPU runs at start-up (docs/architecture.md,
"Portable builds"). This says which, with the devices found.
"""

from __future__ import annotations

import platform
from typing import Any

import corehead


def system_info() -> dict[str, Any]:
    """``build`` ("native" | "portable"), ``cpu_variant`` (e.g. "skylakex"; "native" for a native
    build) and ``cpu_variant_path``, ``cpu_features`` (what that CPU code was compiled for),
    ``backends`` and ``devices`` (ggml's), ``corehead`` (the version) and ``machine``."""
    from corehead import _core

    info: dict[str, Any] = dict(_core.system_info())
    info["corehead"] = corehead.__version__
    info["machine"] = platform.machine()
    return info


def format_system_info(info: dict[str, Any]) -> str:
    where = f"  ({info['cpu_variant_path']})" if info["cpu_variant_path"] else ""
    rows = [("corehead", info["corehead"]), ("build", info["build"]), ("cpu variant", info["cpu_variant"] + where),
            ("cpu features", " ".join(info["cpu_features"]) or "-"), ("backends", ", ".join(info["backends"])),
            ("devices", "; ".join(info["devices"]) or "-"), ("machine", info["machine"])]
    return "\n".join(f"{k:<13} {v}" for k, v in rows)
