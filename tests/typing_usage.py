"""The public typed API as a user writes it: tests/test_typing.py runs ``mypy --strict`` on this
file against the installed package (its py.typed and _core.pyi). Not collected by pytest; it also
runs as a script on the toy model embedded in the package: ``python tests/typing_usage.py``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

import corehead
from corehead import Engine, HeadRanking, HeadSet, Probe, Tokenizer, _core, memory_estimate, rank_heads


def facts(eng: Engine) -> tuple[int, int, str]:
    info: dict[str, Any] = eng.info
    n_layer: int = info["n_layer"]
    vision: dict[str, Any] | None = info["vision"]
    return n_layer, int(info["n_head"]), "" if vision is None else str(vision["projector"])


def scores(eng: Engine) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    ids = eng.token_ids("The answer is")
    logits = eng.logits(ids, all_positions=True)
    rows = eng.attention(ids, positions=[-1], layers=[0])
    masses = eng.attention_masses(ids, np.ones((1, len(ids)), np.float32), positions=[-1])
    return logits, rows, masses


def ranking(eng: Engine, probes: list[Probe]) -> HeadSet:
    r: HeadRanking = rank_heads(eng, probes, progress=False)
    again: HeadRanking = eng.rank_heads(probes, progress=False)
    assert again.ram.shape == r.ram.shape
    return r.top(0.05)


def export(eng: Engine, probe: Probe, heads: HeadSet) -> npt.NDArray[np.float32]:
    from corehead.attention_export import AttentionRecord

    record: AttentionRecord = eng.attention_export(probe, heads, "probe.safetensors", positions="text")
    tokens: list[str] = record.meta["tokens"]
    assert len(tokens) == len(record.tensors["token_ids"])
    return record.tensors["attention"]


def video(eng: Engine, frames: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], str]:
    clip: _core.Video = eng.load_videos([frames], fps=2.0, max_frames=8)[0]
    logits = eng.logits(eng.video_marker + "What happens?", videos=[clip])
    probe = Probe(video=frames, question="What happens?", answer="x", bbox=[0, 0, 8, 8], fps=2.0)
    return logits, probe.question + str(clip.n_frames)


def cache_bytes(eng: Engine) -> int:
    stats: dict[str, Any] = eng.kv_stats()
    return int(stats["bytes"]) + int(eng.image_cache["bytes"])


def estimate(model: str, mmproj: str | None) -> int:
    est: dict[str, Any] = memory_estimate(model, mmproj=mmproj, n_ctx=1024)
    return int(est["total"])


def tokens(path: str) -> list[int]:
    tok = Tokenizer(path)
    ids: list[int] = tok.tokenize("hello world")
    text: str = tok.detokenize(ids)
    return ids if text else []


def native(model: str, mmproj: str) -> int:
    info: _core.TextInfo = _core.inspect_model(model)
    as_dict: dict[str, object] = info.to_dict()
    summary: _core.GgufSummary = _core.gguf_summary(model)
    first: _core.GgufTensorInfo = summary.tensors[0]
    view: _core.VisionInput = _core.largest_vision_input(mmproj)
    options = _core.SparseOptions(core_kv_heads=[(0, 0)], sink=4, visual_budget=8)
    n: int = info.n_layer + summary.data_size + len(first.shape) + view.n_patches + options.sink
    return n + len(as_dict)


def main() -> None:
    from corehead.models import default_model
    from corehead.toy import as_probes, probes

    model_path, mmproj_path = default_model()
    model, mmproj = str(model_path), str(mmproj_path)
    with Engine(model, mmproj=mmproj, n_ctx=512) as eng:
        print(facts(eng), [a.shape for a in scores(eng)], cache_bytes(eng))
        print(ranking(eng, as_probes(probes(2), eng.image_marker)))
    print(estimate(model, mmproj), tokens(model)[:4], native(model, mmproj), corehead.__version__)


if __name__ == "__main__":
    main()
