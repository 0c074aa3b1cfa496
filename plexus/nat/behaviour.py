"""The full NAT report behind ``plexus nat``: mapping (as ``discover``), filtering (RFC 5780 §4.4), port
preservation and hairpinning, each timed. Filtering runs from its own fresh port at the same time as the
mapping test; the hairpin test follows the mapping test on the same port (it needs our public endpoint).

Tests whose negative answer is silence (filtering, hairpin) wait ``quiet_wait``: a few round trips, at least two
RTOs (so one request is retransmitted), at most the profile's STUN timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from plexus.nat.client import StunClient
from plexus.nat.mapping import Discovery, Mapping, discover, first_answers, punchable
from plexus.nat.message import Address
from plexus.profile.model import Endpoint, Stun
from plexus.udp import UdpPort

Filtering = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]
T = TypeVar("T")


def quiet_wait(stun: Stun, rtt: float) -> float:
    """How long to wait for an answer that may rightly never come."""
    return min(stun.timeout, max(2 * stun.rto, 4 * rtt))


@dataclass(frozen=True)
class NatReport:
    local: Address  # our inner endpoint
    public: Address  # our outer endpoint
    mapping: Mapping
    filtering: Filtering | None  # None: the server has no alternate address to test with
    port_preserved: bool
    hairpin: bool | None  # None: not applicable (no NAT)
    punchable: bool
    reason: str  # why (not) punchable, for a non-expert; includes what would still work
    server: Endpoint
    other: Address | None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per test: binding, mapping, filtering,
    # hairpin, total

    @property
    def verdict(self) -> str:
        return f"hole punching: {'possible' if self.punchable else 'not possible'}, because {self.reason}"

    def to_json(self) -> dict[str, Any]:
        from plexus.punch.paths import paths_from  # the path rules live with the punch

        def endpoint(address: Address | None) -> str | None:
            return None if address is None else str(Endpoint(address[0], address[1]))

        return {
            "local": endpoint(self.local), "public": endpoint(self.public), "nat": self.mapping != "none",
            "mapping": self.mapping, "filtering": self.filtering, "port_preserved": self.port_preserved,
            "hairpin": self.hairpin, "punchable": self.punchable, "verdict": self.verdict,
            "server": str(self.server), "other": endpoint(self.other),
            "timings_ms": {name: round(seconds * 1000, 2) for name, seconds in self.timings.items()},
            "paths": paths_from(self.mapping, self.filtering),
        }


async def full_report(stun: Stun, bind: Endpoint | None = None) -> NatReport:
    """Mapping, filtering, port preservation and hairpinning, independent tests in parallel.

    NatError when no STUN server answers or the mapping cannot be tested."""
    bind = bind or stun.bind
    started = time.monotonic()
    async with await UdpPort.bind(bind) as port:
        filtering_task = asyncio.create_task(_timed(measure_filtering(stun, Endpoint(bind.host, 0))))
        try:
            discovery = await discover(port, stun)
            hairpin, hairpin_time = await _timed(_hairpin(port, stun, discovery))
            filtering, filtering_time = await filtering_task
        finally:
            if not filtering_task.done():
                filtering_task.cancel()
                await asyncio.gather(filtering_task, return_exceptions=True)
    ok, reason = punchable(discovery.mapping)
    timings = {"binding": discovery.timings["binding"], "mapping": discovery.timings["mapping"],
               "filtering": filtering_time, "hairpin": hairpin_time, "total": time.monotonic() - started}
    return NatReport(discovery.inner, discovery.outer, discovery.mapping, filtering, discovery.port_preserved,
                     hairpin, ok, reason, discovery.server, discovery.other, timings)


async def _timed(work: Awaitable[T]) -> tuple[T, float]:
    started = time.monotonic()
    result = await work
    return result, time.monotonic() - started


async def measure_filtering(stun: Stun, bind: Endpoint) -> Filtering | None:
    """RFC 5780 §4.4 from a fresh port: a plain Binding opens the NAT toward the primary address; then the
    server is asked to answer from its alternate IP and port (endpoint-independent filtering if that arrives)
    and, at the same time, from its alternate port only (address-dependent if only that arrives)."""
    async with await UdpPort.bind(bind) as port, StunClient(port, rto=stun.rto, timeout=stun.timeout) as client:
        answers = await first_answers(client, stun.servers)
        server, first = next((a for a in answers if a[1].other is not None), answers[0])
        if first.other is None:
            return None
        wait = quiet_wait(stun, first.rtt)
        label = str(server)
        from_anywhere_else, from_other_port = await asyncio.gather(
            client.probe(first.server, deadline=wait, label=label, change_ip=True, change_port=True,
                         reply_from=first.other),
            client.probe(first.server, deadline=wait, label=label, change_port=True,
                         reply_from=(first.server[0], first.other[1])))
    if from_anywhere_else is not None:
        return "endpoint-independent"
    if from_other_port is not None:
        return "address-dependent"
    return "address-and-port-dependent"


async def _hairpin(port: UdpPort, stun: Stun, discovery: Discovery) -> bool | None:
    """Does a packet to our own public endpoint come back through the NAT? (None: no NAT, nothing to test.)"""
    if not discovery.nat:
        return None
    wait = quiet_wait(stun, discovery.timings["binding"])
    async with StunClient(port, rto=stun.rto, timeout=stun.timeout) as client:
        return await client.loops_back(discovery.outer, deadline=wait)
