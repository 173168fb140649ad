"""`corehead explore`: one self-contained HTML page to look at the heads instead of reading tables.

The page (docs/explore.md) shows the layer x head RAM grid of a :class:`corehead.HeadRanking`;
clicking a head draws its attention over each probe's image with the target box, the probe's
tokens show where each of them looks on hover, and the ablation curve of ``corehead ablate``
sits beside them. Everything (script, style, images, quantized attention) is inlined: the file
opens offline and can be mailed.
"""

from corehead.explore.report import build_report, collect

__all__ = ["build_report", "collect"]
