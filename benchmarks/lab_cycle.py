"""Lab timings: ``lab up`` / ``lab down`` wall time over several cycles, and the latency from the end of an
SMTP send (alice, implicit TLS + AUTH) to bob's IMAP IDLE seeing the new message, for 20 mails sent at random
gaps (dovecot's IDLE notification has a ~0.5 s period, so fixed gaps would measure phase luck).

    python3 benchmarks/lab_cycle.py [--cycles 5] [--mails 20] [--name plexus-bench]

Needs root and the lab's Debian packages; uses its own lab name, so it can run beside other labs.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plexus.errors import PlexusError
from plexus.lab import Lab

PROBES = [sys.executable, "-m", "plexus.lab.probes"]


def summary(name: str, values: list[float], unit: str = "s") -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{name:<28} median {statistics.median(ordered):8.3f} {unit}  p95 {p95:8.3f} {unit}  "
            f"min {ordered[0]:8.3f}  max {ordered[-1]:8.3f}  (n={len(ordered)})")


def cycle_times(name: str, cycles: int) -> tuple[list[float], list[float]]:
    ups, downs = [], []
    for _ in range(cycles):
        started = time.monotonic()
        lab = Lab.up(name, force=True)
        ups.append(time.monotonic() - started)
        started = time.monotonic()
        lab.down()
        downs.append(time.monotonic() - started)
    return ups, downs


def mail_latency(lab: Lab, mails: int) -> tuple[list[float], list[float]]:
    """(SMTP send durations, send-done -> IDLE EXISTS latencies) in seconds."""
    watcher = lab.spawn("b", [*PROBES, "idle", "--count", str(mails), "--timeout", str(mails * 3 + 30)])
    assert watcher.stdout is not None
    try:
        ready = json.loads(watcher.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise SystemExit(f"IMAP IDLE watcher did not start: {ready}")
        sends, latencies = [], []
        for number in range(mails):
            time.sleep(random.uniform(0.5, 1.0))
            done = lab.run("a", [*PROBES, "send", "--to", "bob", "--subject", f"bench {number}"])
            sent = json.loads(done.stdout)
            if "error" in sent:
                raise SystemExit(f"send failed: {sent['error']}")
            seen = json.loads(watcher.stdout.readline() or "{}")
            if "exists" not in seen:
                raise SystemExit(f"IDLE watcher stopped: {seen}")
            sends.append(sent["t"] - sent["started"])
            latencies.append(seen["t"] - sent["t"])
        return sends, latencies
    finally:
        lab.stop(watcher)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--mails", type=int, default=20)
    parser.add_argument("--name", default="plexus-bench")
    args = parser.parse_args()
    try:
        ups, downs = cycle_times(args.name, args.cycles)
        print(summary("lab up", ups))
        print(summary("lab down", downs))
        lab = Lab.up(args.name, force=True)
        try:
            sends, latencies = mail_latency(lab, args.mails)
        finally:
            lab.down()
    except PlexusError as error:
        print(f"lab_cycle: {error}", file=sys.stderr)
        return 1
    print(summary("SMTP send (TLS+AUTH+DATA)", [s * 1000 for s in sends], "ms"))
    print(summary("send done -> IDLE EXISTS", [s * 1000 for s in latencies], "ms"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
