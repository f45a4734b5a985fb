"""One row per figure, and the table `python -m bench` prints.

A row holds what we measured, what we measured it against in the same run, and the target it is held to,
so a reader sees the comparison and the verdict together and nothing depends on this machine's speed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure: ours beside its side-by-side baseline, and whether it meets its target."""

    area: str  # "chat", "cold start", "converter", "parser", "planner", "orchestration", "alternative"
    measure: str  # what was measured, with its unit: "p50 per request (ms)"
    ours: str  # our figure, formatted
    baseline: str  # the figure it is compared with, formatted ("-" when it stands alone)
    ratio: str  # ours / baseline, or the count the target applies to, formatted
    target: str  # the target as text ("<= 1.25x floor"), "-" when informational
    met: bool | None  # None when the row carries no target

    @property
    def verdict(self) -> str:
        """'ok', 'MISS' or '' (no target)."""
        return "" if self.met is None else ("ok" if self.met else "MISS")


HEADERS = ("area", "measure", "ours", "baseline", "ratio", "target", "")


def render(rows: Iterable[Row]) -> str:
    """The rows as a GitHub-flavoured Markdown table (readable in a terminal and pasteable into docs)."""
    cells = [HEADERS, *((r.area, r.measure, r.ours, r.baseline, r.ratio, r.target, r.verdict) for r in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) + " |" for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)
