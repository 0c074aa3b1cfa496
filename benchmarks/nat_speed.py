"""How fast NAT discovery is in the lab: wall time of ``discover`` (the mapping check ``plexus up`` waits for)
and of ``full_report`` (``plexus nat``), median and p95 over N runs, measured in-process inside a site's host
namespace (no interpreter start-up in the figures). Targets: discover < 20 ms, full report < 300 ms.

    python3 benchmarks/nat_speed.py [--runs 50] [--sites a c] [--keep]

Builds its own lab (name ``natbench`` unless PLEXUS_LAB_NAME is set) and removes it afterwards unless --keep or
it was already up. Needs root and the lab's packages (coturn, iptables). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from plexus.lab.lab import Lab

TARGETS_MS = {"discover": 20.0, "full_report": 300.0}

# Runs inside the site namespace; a fresh port per run, as `plexus up` / `plexus nat` would have.
MEASURE = r"""
import asyncio, json, statistics, sys, time
from plexus.nat import discover, full_report
from plexus.profile.model import Endpoint, Stun
from plexus.udp import UdpPort

runs, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
stun = Stun(servers=(Endpoint(host, port),))

def summary(samples):
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000, 2),
            "min_ms": round(ordered[0] * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}

async def main():
    discover_times, report_times, mappings = [], [], set()
    for _ in range(runs):
        async with await UdpPort.bind(Endpoint("0.0.0.0", 0)) as udp:
            started = time.perf_counter()
            found = await discover(udp, stun)
            discover_times.append(time.perf_counter() - started)
            mappings.add(found.mapping)
    for _ in range(runs):
        started = time.perf_counter()
        report = await full_report(stun)
        report_times.append(time.perf_counter() - started)
    print(json.dumps({"mapping": sorted(mappings), "filtering": report.filtering,
                      "discover": summary(discover_times), "full_report": summary(report_times)}))

asyncio.run(main())
"""


def measure(lab: Lab, site: str, runs: int) -> dict[str, Any]:
    host, port = lab.stun_primary
    done = lab.run(site, [sys.executable, "-c", MEASURE, str(runs), host, str(port)], timeout=60 + runs * 2)
    if done.returncode != 0:
        raise SystemExit(f"nat_speed: site {site}: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["nat"] = lab.nat(site)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--sites", nargs="+", default=["a", "c"], choices=["a", "b", "c"])
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    name = os.environ.get("PLEXUS_LAB_NAME") or "natbench"
    was_up = Lab(name).is_up()
    lab = Lab.up(name)
    try:
        results = {site: measure(lab, site, args.runs) for site in args.sites}
    finally:
        if not (args.keep or was_up):
            lab.down()
    for site, result in results.items():
        for test, target in TARGETS_MS.items():
            result[test]["target_ms"] = target
            result[test]["met"] = result[test]["p95_ms"] < target
        print(f"site {site} ({result['nat']}, {'/'.join(result['mapping'])}): discover median "
              f"{result['discover']['median_ms']} ms p95 {result['discover']['p95_ms']} ms; full report median "
              f"{result['full_report']['median_ms']} ms p95 {result['full_report']['p95_ms']} ms", file=sys.stderr)
    print(json.dumps({"runs": args.runs, "sites": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
