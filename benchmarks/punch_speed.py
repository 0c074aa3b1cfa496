"""How long the authenticated handshake takes on loopback, and what the acceptor's confirmation (DONE, then a
linger of two quiet intervals) costs: per run, the time until the initiator is complete (it may launch) and until
the acceptor is complete and has closed its port (its payload may bind), beside the floor measured in the same run
(one UDP round trip through the same relay). With ``--loss PCT`` the relay drops that share of packets each way
(random, seeded), so the figures include retransmissions. No root, no lab: real UDP sockets on 127.0.0.1.

    python3 benchmarks/punch_speed.py [--runs 200] [--loss 0] [--interval 0.05]

Prints median and p95 (ms) of each, and the success rate, as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time

from stats import percentile  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.profile.model import Endpoint
from plexus.punch import handshake
from plexus.udp import UdpPort

LOOP = Endpoint("127.0.0.1", 0)


class Relay:
    """Two sockets between the sides; each datagram is dropped with probability ``loss``."""

    def __init__(self, loss: float, rng: random.Random) -> None:
        self.loss, self.rng = loss, rng

    async def start(self, initiator: tuple[str, int], acceptor: tuple[str, int]) -> None:
        self.to_initiator, self.to_acceptor = await UdpPort.bind(LOOP), await UdpPort.bind(LOOP)
        self.to_initiator.add_listener(lambda data, _: self._pass(data, self.to_acceptor, acceptor))
        self.to_acceptor.add_listener(lambda data, _: self._pass(data, self.to_initiator, initiator))

    def _pass(self, data: bytes, out: UdpPort, target: tuple[str, int]) -> bool:
        if self.rng.random() >= self.loss:
            out.sendto(data, target)
        return True

    def close(self) -> None:
        self.to_initiator.close(), self.to_acceptor.close()


async def one_run(loss: float, interval: float, rng: random.Random) -> tuple[float, float] | None:
    acceptor, initiator = await UdpPort.bind(LOOP), await UdpPort.bind(LOOP)
    relay = Relay(loss, rng)
    await relay.start(initiator.local, acceptor.local)
    secret, session = os.urandom(32), os.urandom(8)
    started = time.perf_counter()
    done: dict[str, float] = {}

    async def side(port: UdpPort, peer: tuple[str, int], accepting: bool) -> None:
        await handshake(port, peer, secret, session, accepting=accepting, hops=64, timeout=10.0,
                        interval=interval)
        done["acceptor" if accepting else "initiator"] = time.perf_counter() - started

    try:
        results = await asyncio.gather(side(acceptor, relay.to_acceptor.local, True),
                                       side(initiator, relay.to_initiator.local, False), return_exceptions=True)
    finally:
        acceptor.close(), initiator.close(), relay.close()
    if any(isinstance(result, BaseException) for result in results):
        return None
    return done["initiator"], done["acceptor"]


async def round_trip() -> float:
    """The floor: one datagram there and back through a relay like the handshake's (no loss)."""
    a, b = await UdpPort.bind(LOOP), await UdpPort.bind(LOOP)
    relay = Relay(0.0, random.Random(0))
    await relay.start(a.local, b.local)
    back = asyncio.get_running_loop().create_future()
    b.add_listener(lambda data, _: (b.sendto(data, relay.to_acceptor.local), True)[1])
    a.add_listener(lambda data, _: (back.done() or back.set_result(time.perf_counter()), True)[1])
    started = time.perf_counter()
    a.sendto(b"ping", relay.to_initiator.local)
    try:
        return await asyncio.wait_for(back, 2) - started
    finally:
        a.close(), b.close(), relay.close()


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(percentile(samples, 0.5) * 1000, 2),
            "p95_ms": round(percentile(samples, 0.95) * 1000, 2)}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--loss", type=float, default=0.0, metavar="PCT")
    parser.add_argument("--interval", type=float, default=0.05, help="punch.interval (s)")
    args = parser.parse_args()
    rng = random.Random(1)
    initiator, acceptor, floor, failed = [], [], [], 0
    for _ in range(args.runs):
        floor.append(await round_trip())
        result = await one_run(args.loss / 100, args.interval, rng)
        if result is None:
            failed += 1
            continue
        initiator.append(result[0])
        acceptor.append(result[1])
    report = {"runs": args.runs, "loss_pct": args.loss, "interval_s": args.interval,
              "success": round((args.runs - failed) / args.runs, 4),
              "baseline_round_trip": summary(floor),
              "initiator_complete": summary(initiator) if initiator else None,
              "acceptor_complete_and_closed": summary(acceptor) if acceptor else None}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
