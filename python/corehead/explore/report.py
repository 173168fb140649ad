"""Build the explorer page: collect attention per probe, quantize it, inline it into page.html.

What the page gets (a JSON object in a ``<script type="application/json">``, format
``corehead.Explorer/1``; page.js reads it):

- ``grid``: the ranking's RAM, visual mass, focus and lift per [layer][head], its top 5%;
- ``heads``: the heads whose attention is stored (the best ``max_heads`` by RAM, fewer when their
  rows would pass ``max_mb``); the others show their scores only;
- ``probes``: per probe its image (a PNG data URL, at most ``max_side`` pixels a side), token strings,
  visual positions with their boxes (in the shown image's pixels), target boxes, RAM's relevance
  r_j of every position (the target box's share of a visual token, or 1 on a text probe's span),
  and for every stored head the attention rows of every text (non-visual) position over all keys;
  ``default_rows`` are the rows RAM averages over (the positions that predict the answer);
- ``curve``: an ablation curve (``corehead ablate --json``) when given.

Attention is quantized per row to uint8: value = q / 255 * scale[head][row][g], where g = 1 for a
visual key and 0 for a text key and the scale is the row's maximum over that group, so each
group's largest weight is exact and the others are within scale / 510.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from corehead.attention_export import attention_record
from corehead.probes import Probe
from corehead.ram import DEFINITION, HeadRanking, probe_prompt, relevance_vectors

if TYPE_CHECKING:
    from corehead.engine import Engine

FORMAT = "corehead.Explorer/1"
CURVE_FORMAT = "corehead.AblationCurve/1"
HERE = Path(__file__).parent


def _png_data_url(img: np.ndarray, max_side: int) -> tuple[str, float]:
    """The image as a PNG data URL, downscaled so that its longer side is at most max_side; and the
    scale factor applied."""
    from PIL import Image

    pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8))
    factor = min(1.0, max_side / max(pil.size))
    if factor < 1.0:
        size = (max(1, round(pil.width * factor)), max(1, round(pil.height * factor)))
        pil = pil.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), factor


def quantize_rows(attention: np.ndarray, visual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., n] rows -> (uint8 q [..., n], float32 scale [..., 2]) with row ≈ q / 255 * scale, the
    scale being the row's maximum over the text keys ([..., 0]) or over the visual keys ([..., 1])
    (visual: a boolean [n] mask). Two scales, because a head that puts 0.99 on one text token would
    otherwise round every image weight to zero, and the image view shows exactly those."""
    a = np.asarray(attention, dtype=np.float64)
    vis = np.asarray(visual, dtype=bool)
    scale = np.stack([np.where(vis, 0.0, a).max(axis=-1), np.where(vis, a, 0.0).max(axis=-1)], axis=-1)
    safe = np.where(scale > 0, scale, 1.0)
    per_key = np.where(vis, safe[..., 1:2], safe[..., 0:1])
    q = np.clip(np.rint(a / per_key * 255.0), 0, 255).astype(np.uint8)
    return q, scale.astype(np.float32)


def _round(values, digits: int = 5) -> list:
    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def _significant(values, digits: int = 6) -> list:
    """Nested lists of floats with `digits` significant digits (short JSON, small values kept)."""
    a = np.asarray(values, dtype=np.float64)
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[np.float64])(a).tolist()


def probe_view(eng: Engine, probe: Probe, heads: list[tuple[int, int]], max_side: int = 320) -> dict[str, Any]:
    """What the page needs of one probe (see the module docstring)."""
    if not isinstance(probe, Probe):
        raise TypeError(f"expected a corehead.Probe, got {type(probe).__name__}")
    # Rows for every text position: what each token looks at, shown when it is hovered.
    rec = attention_record(eng, probe, heads, positions="text", include_images=True)
    t = rec.tensors
    rows = t["positions"].tolist()
    # RAM's query set (the rows that predict the answer) is the default view; an answer position
    # that is a visual token (a prompt ending on its image) has no row here.
    defaults = [p for p in t["answer_positions"].tolist() if p in rows] or [max(rows)]
    visual = np.zeros(len(t["token_ids"]), dtype=bool)
    visual[t["visual_positions"]] = True
    q, scale = quantize_rows(t["attention"], visual)
    # r_j over every context position, as RAM defines it (target box or text span): corehead.ram.
    images = [t["image_0"]] if "image_0" in t else []
    relevance, _ = relevance_vectors(eng, probe, probe_prompt(eng, probe), images, len(t["token_ids"]),
                                     t["visual_positions"] if images else None)
    view: dict[str, Any] = {
        "question": probe.question, "answer": probe.answer, "tokens": rec.meta["tokens"],
        "n_tokens": len(t["token_ids"]),
        "rows": rows, "default_rows": [rows.index(p) for p in defaults],
        "visual_positions": t["visual_positions"].tolist(),
        "q": q, "scale": scale,  # [n_heads, ...] arrays until collect() has trimmed and encoded them
        "relevance": _round(relevance, 4), "image": None, "width": 0, "height": 0, "boxes": [], "targets": [],
    }
    if "image_0" in t:
        url, factor = _png_data_url(t["image_0"], max_side)
        h, w = t["image_sizes"][0].tolist()
        boxes, targets = t["visual_token_boxes"], t["target_boxes"]
        view.update(image=url, width=max(1, round(w * factor)), height=max(1, round(h * factor)),
                    original_size=[h, w], boxes=_round(boxes * factor, 3), targets=_round(targets * factor, 3))
    return view


def _curve_data(curve: dict | None, path_hint: str = "curve") -> dict | None:
    if curve is None:
        return None
    if not isinstance(curve, dict) or curve.get("format") != CURVE_FORMAT:
        if isinstance(curve, dict) and "ablated" in curve and "unablated" in curve:
            raise ValueError(f"{path_hint}: this is one ablation (corehead ablate --heads with a head list); the "
                             "explorer takes the curve: corehead ablate --heads heads.json (a ranking) --json")
        raise ValueError(f"{path_hint}: not an ablation curve file (corehead ablate --json, format {CURVE_FORMAT})")
    try:
        top_sets = [{"fraction": float(r["fraction"]), "k": int(r["k"]), "heads": [list(map(int, h))
                                                                                    for h in r["heads"]]}
                    for r in curve["runs"] if r["baseline"] == "top"]
        summary = [{k: r[k] for k in ("fraction", "baseline", "k", "accuracy", "std", "n_runs", "drop")}
                   for r in curve["summary"]]
        return {"base_accuracy": float(curve["base_accuracy"]), "metric": str(curve["metric"]),
                "method": str(curve["method"]), "n_probes": int(curve["n_probes"]), "summary": summary,
                "top_sets": top_sets}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path_hint}: a damaged ablation curve file ({e!r})") from None


def curve_svg(curve: dict | None, width: int = 360, height: int = 240) -> str:
    """The ablation curve as inline SVG: accuracy against the % of heads ablated, one line per
    baseline, the unablated accuracy dashed."""
    if not curve:
        return ""
    left, right, top, bottom = 42, 14, 10, 54
    rows = curve["summary"]
    x_max = max([100 * r["fraction"] for r in rows] + [1.0])

    def x(f: float) -> float:
        return left + (width - left - right) * (100 * f) / x_max

    def y(acc: float) -> float:
        return top + (height - top - bottom) * (1 - acc)

    parts = [f'<svg id="curve-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" role="img" aria-label="ablation curve">',
             f'<line x1="{left}" y1="{y(0):.1f}" x2="{width - right}" y2="{y(0):.1f}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0):.1f}" class="axis"/>']
    for acc in (0, 0.5, 1):
        parts.append(f'<text x="{left - 6}" y="{y(acc) + 4:.1f}" text-anchor="end">{acc:g}</text>')
    for f in sorted({r["fraction"] for r in rows}):
        parts.append(f'<text x="{x(f):.1f}" y="{height - bottom + 16}" text-anchor="middle">{100 * f:g}%</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - bottom + 32}" text-anchor="middle">'
                 f'heads ablated ({html.escape(curve["method"])})</text>')
    parts.append(f'<line x1="{left}" y1="{y(curve["base_accuracy"]):.1f}" x2="{width - right}" '
                 f'y2="{y(curve["base_accuracy"]):.1f}" class="base"/>')
    labels = {"top": "top by RAM", "bottom": "bottom by RAM", "random": "random"}
    for i, base in enumerate(("top", "bottom", "random")):
        pts = sorted((r["fraction"], r["accuracy"], r["k"]) for r in rows if r["baseline"] == base)
        if not pts:
            continue
        line = " ".join(f"{x(f):.1f},{y(a):.1f}" for f, a, _ in pts)
        parts.append(f'<polyline points="{line}" class="run {base}"/>')
        for f, a, k in pts:
            parts.append(f'<circle cx="{x(f):.1f}" cy="{y(a):.1f}" r="3" class="run {base}"><title>{labels[base]}: '
                         f'{k} heads ablated, accuracy {a:.3f}</title></circle>')
        parts.append(f'<text x="{left + 110 * i}" y="{height - 6}" class="run {base}">{labels[base]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def collect(eng: Engine, ranking: HeadRanking, probes: Sequence[Probe], curve: dict | None = None,
            max_probes: int = 8, max_heads: int = 64, max_side: int = 320, title: str | None = None,
            progress: bool = False, max_mb: float = 8.0) -> dict[str, Any]:
    """The page's data (see the module docstring) for the first `max_probes` probes and the best
    `max_heads` heads by RAM, fewer when their attention would take more than `max_mb` MB of the
    page (a long prompt of a real model: the best heads are kept, at least one)."""
    if not isinstance(ranking, HeadRanking):
        raise TypeError(f"ranking must be a corehead.HeadRanking, got {type(ranking).__name__}")
    for name, value, lo in (("max_probes", max_probes, 1), ("max_heads", max_heads, 1), ("max_side", max_side, 16)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if isinstance(max_mb, bool) or not isinstance(max_mb, (int, float)) or not max_mb > 0:
        raise ValueError(f"max_mb must be a number > 0, got {max_mb!r}")
    ranking.check_model(eng.info)
    probes = list(probes)
    if not probes:
        raise ValueError("the explorer needs at least one probe")
    heads = ranking.order()[:max_heads]
    shown = probes[:max_probes]
    iterator: Any = shown
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(shown, desc="explore", unit="probe")
    views = []
    for i, p in enumerate(iterator):
        try:
            views.append(probe_view(eng, p, heads, max_side))
        except (ValueError, TypeError, RuntimeError) as e:
            raise type(e)(f"probe {i}: {e}") from e
    # Base64 of one head's uint8 rows over all probes: 4/3 byte per weight.
    per_head = sum(v["q"][0].size for v in views) * 4 / 3
    keep = max(1, min(len(heads), int(max_mb * 1e6 // max(per_head, 1))))
    heads = heads[:keep]
    for v in views:
        v["q"] = base64.b64encode(np.ascontiguousarray(v["q"][:keep]).tobytes()).decode("ascii")
        v["scale"] = _significant(v["scale"][:keep])
    model = ranking.model or {}
    return {
        "format": FORMAT,
        "title": title or f"corehead explorer: {model.get('name') or model.get('arch') or 'model'}",
        "model": model, "definition": DEFINITION, "params": ranking.params,
        "grid": {"n_layer": ranking.n_layer, "n_head": ranking.n_head, "n_probes": ranking.n_probes,
                 "chance": ranking.chance, "ram": _round(ranking.ram), "visual_mass": _round(ranking.visual_mass),
                 "focus": _round(ranking.focus), "lift": _round(ranking.lift, 3),
                 "top": [list(h) for h in ranking.top(0.05)]},
        "heads": [list(h) for h in heads],
        "probes": views, "n_probes_total": len(probes),
        "curve": _curve_data(curve),
        "quantization": "uint8 per row: value = q / 255 * scale[head][row][1 if the key is visual else 0]",
    }


def render(data: dict[str, Any]) -> str:
    """The page: page.html with page.css, page.js, the data and the curve inlined."""
    page = (HERE / "page.html").read_text(encoding="utf-8")
    # "<" escaped so that no string in the data can close the script element.
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    for marker, value in (("/*@CSS@*/", (HERE / "page.css").read_text(encoding="utf-8")),
                          ("/*@JS@*/", (HERE / "page.js").read_text(encoding="utf-8")),
                          ("@TITLE@", html.escape(data["title"])),
                          ("@CURVE@", curve_svg(data["curve"])),
                          ("@DATA@", payload)):
        page = page.replace(marker, value)
    return page


def build_report(eng: Engine, ranking: HeadRanking, probes: Sequence[Probe], path: str | Path,
                 curve: dict | str | Path | None = None, max_probes: int = 8, max_heads: int = 64,
                 max_side: int = 320, title: str | None = None, progress: bool = False,
                 max_mb: float = 8.0) -> dict[str, Any]:
    """Write the explorer page to `path`; `curve` is an ablation curve (a dict or the JSON file of
    ``corehead ablate --json``). Returns {path, bytes, probes, heads}."""
    if isinstance(curve, (str, Path)):
        curve_path = Path(curve)
        if not curve_path.exists():
            raise FileNotFoundError(f"ablation curve file not found: {curve_path}")
        try:
            curve = json.loads(curve_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{curve_path}: not JSON ({e})") from None
    data = collect(eng, ranking, probes, curve=curve, max_probes=max_probes, max_heads=max_heads, max_side=max_side,
                   title=title, progress=progress, max_mb=max_mb)
    text = render(data)
    out = Path(path)
    out.write_text(text, encoding="utf-8")
    return {"path": str(out), "bytes": len(text.encode("utf-8")), "probes": len(data["probes"]),
            "heads": len(data["heads"]), "n_heads": int(math.prod(ranking.ram.shape))}
