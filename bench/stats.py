"""Small statistics helpers: every figure is a median with its spread, never a single run."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return float(data[0])
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> dict:
    """median, IQR (p25-p75), min, max, p95, p99 and n of ``values`` (each multiplied by ``scale``)."""
    data = [v * scale for v in values]
    if not data:
        return {"n": 0}

    def r(x: float) -> float:
        return round(x, digits)

    return {
        "n": len(data),
        "median": r(percentile(data, 50)),
        "p25": r(percentile(data, 25)),
        "p75": r(percentile(data, 75)),
        "p95": r(percentile(data, 95)),
        "p99": r(percentile(data, 99)),
        "min": r(min(data)),
        "max": r(max(data)),
        "mean": r(sum(data) / len(data)),
    }


def ratio(a: float, b: float, digits: int = 2) -> float | None:
    if not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, digits)


def paired_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Per-round ratios a[i] / b[i] of measurements taken back to back (alternating runs)."""
    return [x / y for x, y in zip(a, b, strict=False) if y]
