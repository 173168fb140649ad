"""corehead: observe and steer the attention heads of quantized multimodal LLMs (GGUF).

    from corehead import Engine
    eng = Engine("model.gguf", mmproj="mmproj.gguf")
    eng.info
"""

from importlib.metadata import PackageNotFoundError, version

from corehead.agreement import Comparison, compare
from corehead.capi import get_include, get_library
from corehead.engine import Engine, inspect
from corehead.errors import ContextOverflowError, ModelError
from corehead.evaluate import AblationCurve, EvalReport
from corehead.memory import memory_estimate
from corehead.probes import Probe, load_probes
from corehead.ram import HeadRanking, HeadSet, rank_heads
from corehead.system import system_info
from corehead.tokenizer import Tokenizer

try:
    __version__ = version("corehead")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = [
    "Engine", "Tokenizer", "Probe", "EvalReport", "AblationCurve", "load_probes", "HeadRanking", "HeadSet",
    "rank_heads", "inspect", "compare", "Comparison",
    "memory_estimate", "ModelError", "ContextOverflowError", "get_include", "get_library", "system_info",
    "__version__",
]
