"""Driving `plexus up --json` in lab sites: its events, waiting for one, launches, ping across the tunnel."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

PLEXUS = [sys.executable, "-m", "plexus"]


def events(process: Any) -> list[dict[str, Any]]:
    found = []
    for line in process.lines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def wait_event(process: Any, phase: str, status: str, *, timeout: float = 20.0, count: int = 1) -> dict[str, Any]:
    """The count-th event with this phase and status; fails the test with the output if it does not come."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [e for e in events(process) if e["phase"] == phase and e["status"] == status]
        if len(matching) >= count:
            return matching[count - 1]
        if time.monotonic() > deadline or process.returncode is not None:
            pytest.fail(f"no {phase}/{status} #{count} from {' '.join(process.argv)} in site {process.site} "
                        f"(exit {process.returncode}); output:\n{process.output()[-4000:]}", pytrace=False)
        time.sleep(0.02)


def launched(process: Any) -> list[dict[str, Any]]:
    return [e for e in events(process) if e["phase"] == "launch" and e["status"] in ("start", "ok")]


def ping(site_run: Any, site: str, address: str, *, attempts: int = 30) -> bool:
    """Bounded: at most ~attempts * 0.3 s."""
    return any(site_run(site, ["ping", "-c1", "-W0.3", address], timeout=5).returncode == 0 for _ in range(attempts))


def up(site_spawn: Any, site: str, profile: str, *extra: str) -> Any:
    return site_spawn(site, [*PLEXUS, "up", profile, "--json", *extra])


def drops(process: Any, text: str, count: int = 1, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while process.output().count(text) < count:
        assert time.monotonic() < deadline, f"no {count} drop(s) {text!r}; output:\n{process.output()[-3000:]}"
        time.sleep(0.05)


def invites_taken(process: Any) -> int:
    return sum(1 for e in events(process) if e["phase"] == "offer-received" and e["status"] == "ok")
