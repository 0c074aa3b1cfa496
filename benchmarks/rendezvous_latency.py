"""Rendezvous latency in the lab: offer sent (SMTP accepted it) -> offer received and verified by the peer.

Runs ``python3 -m plexus.rendezvous.probe`` as acceptor in site b (bob) and as initiator in site a (alice), one
full invite/accept round trip per run, random gaps between runs, and reports per mode the median and p95 of
both legs: the invite (received by the waiting acceptor) and the accept (received by the initiator, which
expects it). Modes:

  idle        IMAP IDLE only, on both sides (dovecot batches IDLE notifications on a ~0.5 s cycle)
  fast        the default: the initiator NOOP-polls every 25 ms while it expects the accept; acceptor IDLEs
  steady      like fast, and the acceptor NOOP-polls every 100 ms instead of IDLE
  poll        the server without IDLE (198.18.0.26), imap.poll = 1 s, fast polling on for the initiator

    python3 benchmarks/rendezvous_latency.py [--runs 50] [--modes idle fast steady poll] [--json]

Uses the lab named by PLEXUS_LAB_NAME (default "plexus"), building it if it is not up (and removing it after).

Measured (2 cores, 50 runs each, S/MIME):       invite leg median / p95     accept leg median / p95
  idle                                          512 / 559 ms                550 / 558 ms
  fast (default)                                551 / 565 ms                 61 /  79 ms
  steady (acceptor NOOP every 100 ms)            77 / 141 ms                 58 /  80 ms
  poll (no-IDLE server, imap.poll 1 s)          388 / 988 ms                 51 /  80 ms
Most of the fast-poll figure is the lab mail server's delivery (submission -> OpenSMTPD -> LMTP, 3-50 ms);
the client sees a delivered mail within one poll interval and verifies it in ~2 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stats import percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab

MODES: dict[str, dict[str, Any]] = {
    "idle": {"initiator": ["--no-fast"], "acceptor": ["--no-fast"], "imap": {}},
    "fast": {"initiator": [], "acceptor": [], "imap": {}},
    "steady": {"initiator": [], "acceptor": ["--steady-poll", "0.1"], "imap": {}},
    "poll": {"initiator": [], "acceptor": [], "imap": {"host": Lab.mail_host_no_idle, "poll": 1.0}},
}


def events(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def run_mode(lab: Lab, mode: str, runs: int, directory: Path) -> dict[str, Any]:
    settings = MODES[mode]
    overrides = {"rendezvous": {"email": {"imap": settings["imap"]}}} if settings["imap"] else {}
    acceptor_profile = lab.write_profile("b", f"bench-{mode}", authentication="smime", directory=directory,
                                         peers=["alice"], **overrides)
    initiator_profile = lab.write_profile("a", f"bench-{mode}-a", authentication="smime", directory=directory,
                                          peers=["bob"], **overrides)
    probe = [sys.executable, "-m", "plexus.rendezvous.probe"]
    acceptor_log = (directory / f"{mode}-acceptor.log").open("w")
    acceptor = lab.spawn("b", [*probe, str(acceptor_profile), "--accept", "--count", str(runs),
                               "--endpoint", "198.18.12.2:40002", *settings["acceptor"]],
                         stdout=acceptor_log, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while '"ready"' not in (directory / f"{mode}-acceptor.log").read_text():
            if time.monotonic() > deadline or acceptor.poll() is not None:
                raise SystemExit(f"{mode}: the acceptor did not start")
            time.sleep(0.05)
        initiator = lab.run("a", [*probe, str(initiator_profile), "--invite", "bob", "--count", str(runs),
                                  "--gap", "0.3", "1.0", "--endpoint", "198.18.11.2:40001", *settings["initiator"]],
                            timeout=runs * 35 + 30)
    finally:
        lab.stop(acceptor)
        acceptor_log.close()
    mine, theirs = events(initiator.stdout), events((directory / f"{mode}-acceptor.log").read_text())
    sent = {e["nonce"]: e["t"] for e in mine + theirs if e["event"] == "sent"}
    invite_legs = [e["t"] - sent[e["nonce"]] for e in theirs if e["event"] == "received" and e["nonce"] in sent]
    accept_legs = [e["t"] - sent[e["nonce"]] for e in mine if e["event"] == "received" and e["nonce"] in sent]
    agreements = sum(e["event"] == "agreement" for e in mine)
    return {"mode": mode, "runs": runs, "agreements": agreements,
            "invite_ms": summary(invite_legs), "accept_ms": summary(accept_legs)}


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ms = [value * 1000 for value in values]
    return {"n": len(ms), "median": round(statistics.median(ms), 1), "p95": round(percentile(ms, 0.95), 1),
            "min": round(min(ms), 1), "max": round(max(ms), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = Lab()
    created = not lab.is_up()
    lab = Lab.up(lab.name)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="plexus-bench-") as directory:
            for mode in args.modes:
                result = run_mode(lab, mode, args.runs, Path(directory))
                results.append(result)
                if not args.json:
                    print(f"{mode:7} agreements {result['agreements']}/{args.runs}   "
                          f"invite (acceptor waits): {fmt(result['invite_ms'])}   "
                          f"accept (initiator expects it): {fmt(result['accept_ms'])}", flush=True)
    finally:
        if created:
            lab.down()
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def fmt(stats: dict[str, float]) -> str:
    if not stats.get("n"):
        return "no data"
    return f"median {stats['median']:6.1f} ms  p95 {stats['p95']:6.1f} ms"


if __name__ == "__main__":
    sys.exit(main())
