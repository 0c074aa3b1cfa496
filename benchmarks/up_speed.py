"""`plexus up` in the lab: time from both sides started to the payload launched on both, and punch success rates.

    sudo python3 benchmarks/up_speed.py [--runs 30] [--punch-runs 50] [--keep]

1. time to launch: per run, `plexus up alice` on b and `plexus up bob` on a are started together (each a fresh
   process: interpreter start-up, profile, STUN, mailbox login, offers, punch); the time is from that start to
   the later of the two "launch ok" events. Payload: the `exec` template running `true`.
2. punch success rate: one acceptor on b serves `plexus up bob` from a, run after run; a run succeeds when the
   initiator launched its payload (exit 0). Without loss, then with 20 % loss on both NATs' outside links.
Prints median and p95. Targets: median < 0.5 s; 100 % and >= 98 %.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from stats import events_of, percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab

PLEXUS = [sys.executable, "-m", "plexus", "-q"]
TRUE_PAYLOAD = {"template": "exec", "payload": {"vars": {"command": "true"}}}


def launch_time(events: list[dict[str, Any]]) -> float | None:
    return next((e["time"] for e in events if e["phase"] == "launch" and e["status"] == "ok"), None)


def time_to_launch(lab: Lab, runs: int) -> list[float]:
    times = []
    for run in range(runs):
        started = time.time()
        bob = lab.spawn("b", [*PLEXUS, "up", "alice-true", "--json"], stdout=subprocess.PIPE)
        alice = lab.spawn("a", [*PLEXUS, "up", "bob-true", "--json"], stdout=subprocess.PIPE)
        try:
            alice_out, _ = alice.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            alice_out = ""
        lab.stop(bob)
        bob_out = bob.stdout.read() if bob.stdout else ""
        a, b = launch_time(events_of(alice_out)), launch_time(events_of(bob_out))
        if a is None or b is None:
            print(f"run {run}: no launch (alice exit {alice.returncode})", file=sys.stderr)
            continue
        times.append(max(a, b) - started)
        time.sleep(random.uniform(0.2, 0.6))  # random gaps: dovecot's IDLE batching has a period
    return times


def success_rate(lab: Lab, runs: int) -> tuple[int, int, int, list[float]]:
    """(runs that launched, runs that reached the punch, punches that succeeded, punch durations)."""
    bob = lab.spawn("b", [*PLEXUS, "up", "alice-true", "--json"], stdout=subprocess.DEVNULL)
    ok, punched, punch_ok, punch_times = 0, 0, 0, []
    try:
        time.sleep(1.5)  # the acceptor is logged in and waiting
        for _ in range(runs):
            done = lab.run("a", [*PLEXUS, "up", "bob-true", "--json"], timeout=120)
            events = events_of(done.stdout)
            punched += any(e["phase"] == "punch" and e["status"] == "start" for e in events)
            punch_ok += any(e["phase"] == "punch" and e["status"] == "ok" for e in events)
            if done.returncode == 0 and launch_time(events) is not None:
                ok += 1
                punch_times += [e["duration"] for e in events if e["phase"] == "punch" and e["status"] == "ok"]
            else:
                failed = next((e for e in reversed(events) if e["status"] == "fail"), None)
                where = f"{failed['phase']}: {failed.get('message', '')}" if failed else done.stderr.strip()[-200:]
                print(f"  failed run (exit {done.returncode}): {where}", file=sys.stderr)
            time.sleep(random.uniform(0.05, 0.3))
    finally:
        lab.stop(bob)
    return ok, punched, punch_ok, punch_times


def report(label: str, values: list[float], unit: str = "s") -> None:
    if not values:
        print(f"{label}: no successful runs")
        return
    scale = 1000 if unit == "ms" else 1
    print(f"{label}: median {statistics.median(values) * scale:.3f} {unit}, "
          f"p95 {percentile(values, 0.95) * scale:.3f} {unit} (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--punch-runs", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    parser.add_argument("--acceptor-poll", default=None, metavar="DURATION",
                        help="the acceptor polls (NOOP) at this interval instead of IDLE, e.g. 50ms")
    args = parser.parse_args()
    lab = Lab.up(os.environ.get("PLEXUS_LAB_NAME") or "bench-up", force=True)
    try:
        imap = {"idle": False, "poll": args.acceptor_poll} if args.acceptor_poll else {"idle": True}
        lab.write_profile("b", "alice-true", template="exec", payload={"vars": {"command": "true"}},
                          rendezvous={"email": {"imap": imap}})
        print(f"acceptor waits with {'NOOP every ' + args.acceptor_poll if args.acceptor_poll else 'IDLE'}")
        lab.write_profile("a", "bob-true", template="exec", payload={"vars": {"command": "true"}},
                          rendezvous={"timeout": "60s"}, punch={"timeout": "20s"})
        report("time from both `plexus up` started to payload launched on both", time_to_launch(lab, args.runs))
        for loss in (0.0, 20.0) if args.punch_runs else ():
            lab.set_netem(loss_pct=loss)
            ok, punched, punch_ok, punch_times = success_rate(lab, args.punch_runs)
            print(f"{loss:.0f} % loss: punch success {punch_ok}/{punched} = {100 * punch_ok / max(punched, 1):.1f} % "
                  f"of the runs that reached the punch; end to end {ok}/{args.punch_runs} launched")
            report(f"  punch + handshake duration ({loss:.0f} % loss)", punch_times, "ms")
        lab.set_netem(0, 0)
    finally:
        if not args.keep:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
