"""Small helpers the benchmarks share (they run as scripts: `python3 benchmarks/NAME.py`)."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0..1) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def events_of(output: str) -> list[dict[str, Any]]:
    """The JSON events in a `plexus up --json` output (other lines, e.g. the payload's, are skipped)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                found.append(json.loads(line))
    return found


def ping_rtt(lab: Any, site: str, address: str, count: int = 20) -> float | None:
    """The average ping RTT in ms from ``site`` to ``address`` (bounded: ``count`` pings 50 ms apart)."""
    done = lab.run(site, ["ping", "-c", str(count), "-i", "0.05", "-W", "1", address], timeout=30)
    found = re.search(r"= [\d.]+/([\d.]+)/", done.stdout)
    return float(found.group(1)) if found else None
