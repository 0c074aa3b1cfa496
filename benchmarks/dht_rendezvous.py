"""DHT rendezvous time in the lab: alice (site a) and bob (site b), each behind its NAT, meet through the lab's
bootstrap node (srv) with S/MIME-sealed offers; no mail server involved.

Two measures, median and p95 over ``--runs`` runs (random gaps between runs):

  exchange   invite sent -> agreement (accept received and verified), one running initiator node
  cold       a fresh initiator process (python start, DHT node start, bootstrap, invite, accept) from spawn
             to agreement: the rendezvous share of `plexus up`'s time to tunnel

    python3 benchmarks/dht_rendezvous.py [--runs 30] [--json]

Uses the lab named by PLEXUS_LAB_NAME (default "plexus"), building it if it is not up (and removing it after).

Measured (2 cores, 30 runs, S/MIME, lab NATs eim/eim, one lab bootstrap node):
  exchange   median 7.8 ms, p95 11.8 ms (4-8 ms in other runs)
  cold       median 2.5 s, p95 3.7 s (1.35 s at best), 0 of 30 failed: behind NATs, a fresh node's first lookup
             waits about a second per node it cannot reach (the peer's node, and the nodes of earlier runs that
             are gone, which the bootstrap node still names), so the figure grows while dead nodes pile up.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stats import percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab
from plexus.lab.dht import dht_profile_overrides, start_bootstrap, stop_bootstrap

PROBE = [sys.executable, "-m", "plexus.rendezvous.dht.probe"]


def summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"n": 0}
    ms = [value * 1000 for value in seconds]
    return {"n": len(ms), "median": round(statistics.median(ms), 1), "p95": round(percentile(ms, 0.95), 1),
            "min": round(min(ms), 1), "max": round(max(ms), 1)}


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"event"')]


def measure(lab: Lab, runs: int, directory: Path) -> dict[str, Any]:
    app = f"plexus-bench-{random.getrandbits(32):08x}"  # keys of our own: older values live 10 min
    bob_profile = lab.write_profile("b", "bench-dht-b", peers=["alice"], directory=directory,
                                    **dht_profile_overrides(app))
    alice_profile = lab.write_profile("a", "bench-dht-a", peers=["bob"], directory=directory,
                                      **dht_profile_overrides(app))
    log_path = directory / "bob.log"
    with log_path.open("w") as log:
        bob = lab.spawn("b", [*PROBE, str(bob_profile), "--accept", "--count", "0"], stdout=log,
                        stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while '"ready"' not in log_path.read_text():
            if time.monotonic() > deadline or bob.poll() is not None:
                raise SystemExit("bob's probe did not start")
            time.sleep(0.05)
        warm = lab.run("a", [*PROBE, str(alice_profile), "--invite", "bob", "--count", str(runs),
                             "--gap", "0.2", "0.6"], timeout=runs * 40 + 30)
        sent = {e["nonce"]: e["offer_time"] for e in events(warm.stdout)
                if e["event"] == "sent" and e["kind"] == "invite"}
        exchange = [e["t"] - sent[e["reply_to"]] for e in events(warm.stdout)
                    if e["event"] == "received" and e["kind"] == "accept" and e.get("reply_to") in sent]
        cold: list[float] = []
        failures: list[str] = []
        for _ in range(runs):
            time.sleep(random.uniform(0.2, 0.6))
            started = time.time()
            done = lab.run("a", [*PROBE, str(alice_profile), "--invite", "bob"], timeout=60)
            agreements = [e for e in events(done.stdout) if e["event"] == "agreement"]
            if done.returncode == 0 and agreements:
                cold.append(agreements[0]["t"] - started)
            else:
                errors = [e["message"] for e in events(done.stdout) if e["event"] == "error"]
                failures.append(errors[-1] if errors else f"exit {done.returncode}: {done.stderr[-200:]}")
    finally:
        lab.stop(bob)
    return {"runs": runs, "exchange_ms": summary(exchange), "cold_ms": summary(cold), "cold_failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = Lab()
    created = not lab.is_up()
    lab = Lab.up(lab.name)
    try:
        start_bootstrap(lab)
        with tempfile.TemporaryDirectory(prefix="plexus-bench-dht-") as directory:
            result = measure(lab, args.runs, Path(directory))
    finally:
        stop_bootstrap(lab)
        if created:
            lab.down()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name in ("exchange", "cold"):
            stats = result[f"{name}_ms"]
            print(f"{name:9} n={stats.get('n', 0):3}  median {stats.get('median', 0):7.1f} ms  "
                  f"p95 {stats.get('p95', 0):7.1f} ms  (min {stats.get('min', 0)}, max {stats.get('max', 0)})")
        print(f"cold failures: {len(result['cold_failures'])}")
        for failure in result["cold_failures"][:5]:
            print(f"  {failure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
