"""Where corehead's C API lives: the header folder and the shared library, for building desktop
apps and other languages' bindings against the installed package (numpy.get_include() style).

    cc app.c -I"$(python -c 'import corehead; print(corehead.get_include())')" \\
       "$(python -c 'import corehead; print(corehead.get_library())')"

The wheel installs ``corehead/include/corehead/corehead.h`` and ``corehead/lib/libcorehead.so``
(``.dylib`` on macOS). A source checkout run with ``PYTHONPATH=python`` finds the header in
``cpp/include`` and the library where the developer build copies it: ``python/corehead/lib/``
(README.md, "Embed in an app").
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = Path("corehead") / "corehead.h"


def _install_dirs() -> list[Path]:
    """Folders the build installs next to: the package, and where corehead._core lives (they differ
    in an editable install, which keeps the sources here and the built files elsewhere)."""
    dirs = [HERE]
    spec = importlib.util.find_spec("corehead._core")
    if spec is not None and spec.origin:
        core_dir = Path(spec.origin).resolve().parent
        if core_dir != HERE:
            dirs.append(core_dir)
    return dirs


def _library_name() -> str:
    if sys.platform == "darwin":
        return "libcorehead.dylib"
    if sys.platform == "win32":
        return "corehead.dll"
    return "libcorehead.so"


def get_include() -> str:
    """The folder that holds ``corehead/corehead.h`` (pass it to the compiler as ``-I``)."""
    # installed (wheel or editable), then a source checkout
    for folder in [d / "include" for d in _install_dirs()] + [HERE.parents[1] / "cpp" / "include"]:
        if (folder / HEADER).is_file():
            return str(folder)
    raise FileNotFoundError(f"corehead/corehead.h is neither in {HERE / 'include'} (an installed wheel) nor in a "
                            "source checkout's cpp/include: reinstall corehead (pip install corehead)")


def get_library() -> str:
    """The path of the shared C library (libcorehead) to link against and load at run time."""
    for folder in _install_dirs():
        if (folder / "lib" / _library_name()).is_file():
            return str(folder / "lib" / _library_name())
    path = HERE / "lib" / _library_name()
    raise FileNotFoundError(f"{path} does not exist: reinstall corehead, or in a source checkout build it and copy "
                            "it in: cmake --build build/dev && mkdir -p python/corehead/lib && "
                            f"cp build/dev/{_library_name()} python/corehead/lib/")
