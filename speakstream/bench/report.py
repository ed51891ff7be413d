"""Printing benchmark figures: medians and 90th percentiles in aligned tables."""

from __future__ import annotations

import math
import resource
import statistics
from collections.abc import Sequence


def p90(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def median_p90(values: Sequence[float | None], scale: float = 1.0, digits: int = 0) -> str:
    """ "median / p90" of the values that exist, scaled (1000 turns seconds into ms)."""
    present = [v * scale for v in values if v is not None]
    if not present:
        return "-"
    return f"{statistics.median(present):.{digits}f} / {p90(present):.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [header, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
