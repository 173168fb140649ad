"""`corehead serve`: an OpenAI-compatible HTTP server (needs ``pip install 'corehead[serve]'``).

    from corehead.serve import create_app
    app = create_app("model.gguf", mmproj="mmproj.gguf", parallel=2)   # a FastAPI app
    uvicorn.run(app, host="127.0.0.1", port=8080)

Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,
POST /corehead/rank. See docs/serve.md for the formats and corehead's extensions.
FastAPI is imported only inside this package, so ``import corehead`` does not need it.
"""

from __future__ import annotations

from typing import Any

try:
    from corehead.serve.app import create_app
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(f"corehead serve needs FastAPI, uvicorn and sse-starlette: pip install 'corehead[serve]' "
                      f"({e})") from e

__all__ = ["create_app", "serve"]


def serve(host: str = "127.0.0.1", port: int = 8080, log_level: str = "info", **kwargs: Any) -> None:
    """Build the app (kwargs as for :func:`create_app`) and run it with uvicorn until interrupted."""
    import uvicorn

    app = create_app(**kwargs)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
