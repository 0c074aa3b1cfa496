"""Birthday-paradox probing between an easy NAT (one public port per local port) and a hard one (a new public
port per destination), after Tailscale's "How NAT traversal works":

- the hard side opens ``SOCKETS`` UDP sockets and sends TTL-limited opening packets from each toward the easy
  side's endpoint: its NAT picks ``SOCKETS`` random public ports, each open for packets from that endpoint;
- the easy side sends authenticated HELLOs from its punched port to random ports of the hard side's address
  (``handshake(spray=...)``): with 256 sockets and 2048 probes over ~64 000 ports, one lands with
  1 - (1 - 256/64512)^2048 ≈ 99.97 % probability;
- the socket that completes the authenticated handshake wins; the others close, and the payload gets the
  winner's port.

Bounded: ``SOCKETS`` sockets, at most ``PROBES`` probes at ``RATE`` per second, only ever to the address the
authenticated offer named, for the punch timeout at most.
"""

from __future__ import annotations

import asyncio
import contextlib

from plexus.errors import NatError
from plexus.profile.model import Endpoint
from plexus.punch.handshake import PunchResult, Spray, handshake
from plexus.udp import Address, UdpPort

SOCKETS = 256
PROBES = 2048
RATE = 1000.0  # probes per second: 2048 probes take about two seconds


def spray_toward(address: str) -> Spray:
    return Spray(address, PROBES, RATE)


async def race(first: UdpPort, peer: Address, secret: bytes, session_id: bytes, *, accepting: bool, hops: int,
               timeout: float, interval: float, sockets: int = SOCKETS) -> tuple[UdpPort, PunchResult]:
    """The hard side: the handshake on ``first`` and on ``sockets - 1`` more ports at once, quiet (TTL-limited
    openers only) until one is heard; the winning port and its result. The other ports are closed."""
    host = first.local[0]
    ports = [first]
    try:
        for _ in range(sockets - 1):
            ports.append(await UdpPort.bind(Endpoint(host, 0)))
    except NatError:
        pass  # fewer sockets (a descriptor limit): fewer chances, still a try
    except Exception:
        for port in ports[1:]:
            port.close()
        raise
    tasks = {asyncio.get_running_loop().create_task(
        handshake(port, peer, secret, session_id, accepting=accepting, hops=hops, timeout=timeout,
                  interval=interval, quiet=True)): port for port in ports}
    winner: tuple[UdpPort, PunchResult] | None = None
    failure: BaseException | None = None
    try:
        pending = set(tasks)
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    winner = (tasks[task], task.result())
                    break
                failure = task.exception()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)
        for port in ports:
            if winner is None or port is not winner[0]:
                port.close()
    if winner is None:
        assert failure is not None
        raise failure
    return winner
