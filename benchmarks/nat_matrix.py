"""The NAT matrix: every pair of lab NAT kinds, `plexus up` between site a (initiator) and site b (acceptor), N runs
per cell: success rate, the path taken (direct / probed / relayed) and the median and p95 time from both started
to the payload launched on both (payload: `exec` running `true`; both profiles name the lab's TURN server,
policy fallback). Then, between two endpoint-independent NATs, a WireGuard tunnel direct and one relayed
(policy always), side by side in the same run: iperf3 throughput (TCP, one stream) and ping RTT through each,
beside the RTT between the two sites' public addresses (no tunnel) as the baseline.

    sudo python3 benchmarks/nat_matrix.py [--runs 10] [--kinds none,eim,...] [--seconds 5] [--keep]

Builds its own lab (``natmatrix`` unless PLEXUS_LAB_NAME is set). Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from stats import events_of, percentile, ping_rtt  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab
from plexus.lab.topology import NAT_KINDS

PLEXUS = [sys.executable, "-m", "plexus", "-q"]
TRUE = {"payload": {"vars": {"command": "true"}}}


def first(events: list[dict[str, Any]], phase: str, status: str) -> dict[str, Any] | None:
    return next((e for e in events if e["phase"] == phase and e["status"] == status), None)


def one_run(lab: Lab) -> tuple[float | None, str]:
    """Both sides started together; (seconds to launched on both, or None; the path or the failure)."""
    started = time.time()
    bob = lab.spawn("b", [*PLEXUS, "up", "alice-true", "--json"], stdout=subprocess.PIPE)
    alice = lab.spawn("a", [*PLEXUS, "up", "bob-true", "--json"], stdout=subprocess.PIPE)
    try:
        alice_out, _ = alice.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        lab.stop(alice)
        alice_out = alice.stdout.read() if alice.stdout else ""
    time.sleep(0.3)  # the acceptor's launch event follows its punch
    lab.stop(bob)
    bob_out = bob.stdout.read() if bob.stdout else ""
    mine, theirs = events_of(alice_out), events_of(bob_out)
    launched = [first(side, "launch", "ok") for side in (mine, theirs)]
    punch = [e for e in mine if e["phase"] == "punch" and e["status"] == "ok"]
    if alice.returncode != 0 or None in launched or not punch:
        failed = next((e for e in reversed(mine) if e["status"] == "fail"), None)
        return None, f"exit {alice.returncode}: {failed['message'][:120] if failed else '?'}"
    return max(e["time"] for e in launched if e) - started, punch[-1]["data"]["path"]


def cell(lab: Lab, kind_a: str, kind_b: str, runs: int) -> dict[str, Any]:
    lab.set_nat("a", kind_a)  # type: ignore[arg-type]
    lab.set_nat("b", kind_b)  # type: ignore[arg-type]
    lab.write_profile("b", "alice-true", template="exec", **TRUE)  # after set_nat: punch.hops follows the NATs
    lab.write_profile("a", "bob-true", template="exec", punch={"timeout": "6s"}, **TRUE)
    times, paths, failures = [], Counter(), Counter()
    for _ in range(runs):
        seconds, what = one_run(lab)
        if seconds is None:
            failures[what] += 1
        else:
            times.append(seconds)
            paths[what] += 1
    result: dict[str, Any] = {"a": kind_a, "b": kind_b, "success": len(times), "runs": runs,
                              "paths": dict(paths), "failures": dict(failures)}
    if times:
        result.update(median_s=round(percentile(times, 0.5), 3), p95_s=round(percentile(times, 0.95), 3))
    return result


def tunnel(lab: Lab, initiator_profile: str, seconds: int) -> dict[str, Any]:
    """A WireGuard tunnel a -> b: iperf3 through it and ping RTT through it."""
    bob = lab.spawn("b", [*PLEXUS, "up", "alice-wg", "--json"], stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    alice = lab.spawn("a", [*PLEXUS, "up", initiator_profile, "--json"], stdout=subprocess.DEVNULL)
    server = None
    try:
        deadline = time.monotonic() + 60
        while lab.run("a", ["ping", "-c1", "-W1", "198.19.0.2"], timeout=5).returncode != 0:
            if time.monotonic() > deadline:
                return {"error": "the tunnel never carried a ping"}
        server = lab.spawn("b", ["iperf3", "-s", "-1", "-B", "198.19.0.2"], stdout=subprocess.DEVNULL)
        rtt = ping_rtt(lab, "a", "198.19.0.2")
        done = lab.run("a", ["iperf3", "-c", "198.19.0.2", "-t", str(seconds), "-J"], timeout=seconds + 30)
        report = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
        if "error" in report or done.returncode != 0:
            return {"rtt_ms": rtt, "error": report.get("error") or done.stderr.strip()[-200:]}
        received = report.get("end", {}).get("sum_received", {}).get("bits_per_second")
        return {"rtt_ms": rtt, "mbit_s": round(received / 1e6, 1) if received else None}
    finally:
        for process in (server, alice, bob):
            if process is not None:
                lab.stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--kinds", default=",".join(NAT_KINDS), help="comma-separated NAT kinds")
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per tunnel")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    name = os.environ.get("PLEXUS_LAB_NAME") or "natmatrix"
    lab = Lab.up(name, force=True)
    matrix, throughput = [], {}
    try:
        print(f"{'a (initiator)':>14} {'b (acceptor)':>14}  success  paths                    median    p95")
        for kind_a in kinds:
            for kind_b in kinds:
                result = cell(lab, kind_a, kind_b, args.runs)
                matrix.append(result)
                paths = ", ".join(f"{p} {n}" for p, n in result["paths"].items()) or "-"
                print(f"{kind_a:>14} {kind_b:>14}  {result['success']:>3}/{result['runs']:<3}  {paths:<24} "
                      f"{result.get('median_s', float('nan')):6.2f} s {result.get('p95_s', float('nan')):6.2f} s"
                      + (f"  failures: {result['failures']}" if result["failures"] else ""), flush=True)
        if not args.no_throughput:
            lab.set_nat("a", "eim")
            lab.set_nat("b", "eim")
            lab.write_profile("b", "alice-wg", template="wireguard")
            lab.write_profile("a", "bob-wg", template="wireguard")
            lab.write_profile("a", "bob-wg-relayed", template="wireguard", relay={"policy": "always"})
            turn_host = lab.turn_server[0]
            throughput = {"baseline_rtt_ms (a to the TURN server + b to it, no tunnel)":
                          round((ping_rtt(lab, "a", turn_host) or 0) + (ping_rtt(lab, "b", turn_host) or 0), 3),
                          "direct": tunnel(lab, "bob-wg", args.seconds),
                          "relayed": tunnel(lab, "bob-wg-relayed", args.seconds)}
            direct, relayed = throughput["direct"], throughput["relayed"]
            if direct.get("mbit_s") and relayed.get("mbit_s"):
                throughput["relayed/direct throughput"] = round(relayed["mbit_s"] / direct["mbit_s"], 2)
            if direct.get("rtt_ms") is not None and relayed.get("rtt_ms") is not None:
                throughput["rtt the relay adds, ms"] = round(relayed["rtt_ms"] - direct["rtt_ms"], 3)
            print(json.dumps(throughput, indent=2))
    finally:
        if not args.keep:
            lab.down()
    connected = sum(1 for r in matrix if r["success"] == r["runs"])
    print(json.dumps({"runs_per_cell": args.runs, "cells": len(matrix), "cells_all_connected": connected,
                      "matrix": matrix, "throughput": throughput}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
