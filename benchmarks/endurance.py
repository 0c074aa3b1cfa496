"""One acceptor process, many sessions in a row: its resident memory (VmRSS) and open file descriptors, sampled
as the sessions go, should stay flat (a leak of a socket, a task or a run directory per session shows here).

    sudo python3 benchmarks/endurance.py [--sessions 200] [--every 20] [--keep]

Site b runs one `plexus up alice-true` (accept, `exec` payload running `true`); site a runs `plexus up bob-true`
that many times, one after the other. Prints a sample line every N sessions, then one JSON object with the
first and last samples, the growth, and the median / p95 time of a session (process start to exit).
Builds its own lab (``endurance`` unless PLEXUS_LAB_NAME is set).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stats import percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab

PLEXUS = [sys.executable, "-m", "plexus", "-q"]
TRUE = {"payload": {"vars": {"command": "true"}}}


def sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return {"rss_mb": round(int(found.group(1)) / 1024, 1) if found else -1.0,
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    lab = Lab.up(os.environ.get("PLEXUS_LAB_NAME") or "endurance", force=True)
    samples: list[dict[str, Any]] = []
    times: list[float] = []
    failures = 0
    try:
        lab.write_profile("b", "alice-true", template="exec", **TRUE)
        lab.write_profile("a", "bob-true", template="exec", **TRUE)
        bob = lab.spawn("b", [*PLEXUS, "up", "alice-true", "--json"], stdout=subprocess.DEVNULL)
        time.sleep(2.0)
        samples.append({"session": 0, **sample(bob.pid)})
        print(f"after {0:4d} sessions: {samples[-1]['rss_mb']} MB, {samples[-1]['fds']} fds", flush=True)
        for number in range(1, args.sessions + 1):
            started = time.monotonic()
            done = lab.run("a", [*PLEXUS, "up", "bob-true", "--json"], timeout=60)
            times.append(time.monotonic() - started)
            failures += done.returncode != 0
            if number % args.every == 0:
                time.sleep(0.5)  # the acceptor's session ends a moment after the initiator's
                samples.append({"session": number, **sample(bob.pid)})
                print(f"after {number:4d} sessions: {samples[-1]['rss_mb']} MB, {samples[-1]['fds']} fds "
                      f"({failures} failed)", flush=True)
        lab.stop(bob)
    finally:
        if not args.keep:
            lab.down()
    first, last = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    print(json.dumps({"sessions": args.sessions, "failed": failures, "samples": samples,
                      "rss_growth_mb (after the first batch to the end)": round(last["rss_mb"] - first["rss_mb"], 1),
                      "fd_growth (after the first batch to the end)": last["fds"] - first["fds"],
                      "session_s": {"median": round(percentile(times, 0.5), 3),
                                    "p95": round(percentile(times, 0.95), 3)} if times else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
