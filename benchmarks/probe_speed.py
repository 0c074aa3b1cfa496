"""Probing in the lab: carol (symmetric NAT, site c) connecting to bob (endpoint-independent, site b) by
birthday-paradox probing, beside alice (endpoint-independent, site a) connecting to the same bob directly, run
after run in the same lab: success rate, and median / p95 of the punch phase and of the whole `plexus up` (process
start to payload launched). Payload: the `exec` template running `true`.

    sudo python3 benchmarks/probe_speed.py [--runs 10] [--keep]

Builds its own lab (``probebench`` unless PLEXUS_LAB_NAME is set). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from stats import percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab

PLEXUS = [sys.executable, "-m", "plexus", "--quiet"]


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def one(lab: Lab, site: str) -> tuple[float, float] | None:
    started = time.monotonic()
    done = lab.run(site, [*PLEXUS, "up", "bob-exec", "--json"], timeout=60)
    total = time.monotonic() - started
    found = events(done.stdout)
    punch = [e for e in found if e["phase"] == "punch" and e["status"] == "ok"]
    if done.returncode != 0 or not punch:
        return None
    return punch[0]["duration"], total


def summary(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    return {"median_s": round(percentile(samples, 0.5), 4), "p95_s": round(percentile(samples, 0.95), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    name = os.environ.get("PLEXUS_LAB_NAME") or "probebench"
    was_up = Lab(name).is_up()
    lab = Lab.up(name)
    exec_vars = {"payload": {"vars": {"command": "true"}}}
    acceptor = None
    try:
        lab.write_profile("b", "alice-exec", template="exec", peers=["alice", "carol"], **exec_vars)
        for site in ("a", "c"):
            lab.write_profile(site, "bob-exec", template="exec", **exec_vars)
        acceptor = lab.spawn("b", [*PLEXUS, "up", "alice-exec", "--json"])
        time.sleep(2.0)
        results: dict[str, dict[str, list[float]]] = {s: {"punch": [], "total": []} for s in ("direct", "probed")}
        failures = {"direct": 0, "probed": 0}
        for _ in range(args.runs):
            for path, site in (("direct", "a"), ("probed", "c")):
                measured = one(lab, site)
                if measured is None:
                    failures[path] += 1
                    continue
                results[path]["punch"].append(measured[0])
                results[path]["total"].append(measured[1])
    finally:
        if acceptor is not None:
            lab.stop(acceptor)
        if not (args.keep or was_up):
            lab.down()
    report = {path: {"success": f"{args.runs - failures[path]}/{args.runs}",
                     "punch": summary(values["punch"]), "up_to_launch": summary(values["total"])}
              for path, values in results.items()}
    print(json.dumps({"runs": args.runs, "baseline": "direct (alice, eim)", **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
