"""Exceptions raised by corehead.

- ``ModelError`` (a ``ValueError``): a model or mmproj file is malformed, unsupported, or does not
  match its partner; the message names the file and the problem.
- ``ContextOverflowError`` (a ``ValueError``): a request does not fit in the context window.
- ``FileNotFoundError``: a path does not exist.
- ``ValueError`` / ``TypeError``: an argument is invalid.
"""

from corehead._core import ContextOverflowError, ModelError

__all__ = ["ModelError", "ContextOverflowError"]
