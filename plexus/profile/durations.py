"""Durations as written in profiles: ``500ms``, ``30s``, ``2m``, ``1h``, or a plain number of seconds."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | float) -> float:
    """Seconds; ValueError with the reason for anything else (negative, not finite, unknown unit)."""
    if isinstance(value, bool):
        raise ValueError("a duration is not true/false")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a duration like 500ms, 30s, 2m or 1h")
        seconds = float(match.group(1)) * _UNIT[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a finite, non-negative duration")
    return seconds
