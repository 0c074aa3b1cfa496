"""One session's path, once the offers are exchanged: the punch (direct, probed or over the relay) and then the
payload on the punched port — or, on the side that holds the TURN allocation, on a local port joined to it.

Shared by both roles (``initiate``, ``accept``): the local side (``Local``), STUN discovery, the punch window,
the relay allocation as a reported phase, and our NAT's filtering, measured once per process in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from plexus.errors import RelayError
from plexus.events import Reporter, phase
from plexus.launch.runner import run_payload
from plexus.launch.template import Prepared, SessionContext, Template, find_template
from plexus.nat import Mapping, discover
from plexus.profile.model import Endpoint, Profile
from plexus.punch import Opener, handshake
from plexus.punch.handshake import PunchResult
from plexus.punch.paths import Plan
from plexus.punch.probing import race, spray_toward
from plexus.relay import Allocation, Bridge, allocate
from plexus.rendezvous.base import Agreement, LocalOffer
from plexus.udp import Address, UdpPort

DIRECT = Plan()


@dataclass
class Local:
    """One session's local side: the port that asked STUN, what STUN saw, and the payload's fresh keys."""

    port: UdpPort
    inner: Address  # our local address as the kernel routes toward STUN (not 0.0.0.0), and the port
    outer: Address
    mapping: Mapping
    template: Template
    prepared: Prepared

    def offer(self, *, filtering: str | None = None, relay: Allocation | None = None,
              path: str | None = None) -> LocalOffer:
        return LocalOffer(self.outer, self.mapping, dict(self.prepared.exports), filtering,
                          relay.relayed if relay is not None else None, path)


def template_of(profile: Profile) -> Template:
    return find_template(profile.payload.template, profile.path.parent if profile.path else None)


async def discover_nat(profile: Profile, port: UdpPort, report: Reporter,
                       peer: str | None) -> tuple[Address, Address, Mapping]:
    with phase(report, "nat", "asking STUN", peer) as result:
        found = await discover(port, profile.stun)
        result["message"] = f"public {found.outer[0]}:{found.outer[1]}, {found.mapping} mapping"
        result.update(inner=list(found.inner), outer=list(found.outer), mapping=found.mapping)
    return found.inner, found.outer, found.mapping


class FilteringProbe:
    """Our NAT's filtering (RFC 5780 §4.4), measured once in the background from a fresh port: it only matters
    when the peer is behind a hard NAT, and a full-cone NAT then spares the probing. None: not known (yet)."""

    def __init__(self, profile: Profile) -> None:
        from plexus.nat.behaviour import measure_filtering

        async def measure() -> str | None:
            with contextlib.suppress(Exception):
                return await measure_filtering(profile.stun, Endpoint(profile.stun.bind.host, 0))
            return None

        self._task = asyncio.get_running_loop().create_task(measure())

    def known(self) -> str | None:
        """The result if it is in, without waiting (an initiator does not delay its invite for it)."""
        return self._task.result() if self._task.done() and not self._task.cancelled() else None

    async def wait(self, limit: float) -> str | None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._task), limit)
        return self.known()

    def close(self) -> None:
        self._task.cancel()


async def allocate_relay(profile: Profile, report: Reporter, peer: str) -> Allocation:
    servers = profile.relay.servers
    with phase(report, "relay", f"allocating on {servers[0].url}", peer) as result:
        allocation = await allocate(servers, profile.host.id, profile.relay.lifetime)
        result["message"] = f"relayed address {allocation.relayed[0]}:{allocation.relayed[1]} on " \
                            f"{allocation.server.url}"
        result.update(relayed=list(allocation.relayed), server=allocation.server.url)
    return allocation


def punch_window(profile: Profile, accepting: bool) -> float:
    """How long to punch. The acceptor cannot know when its answer reaches the initiator (a slow or lossy
    mailbox may take most of the initiator's rendezvous timeout), so it keeps its side open that much longer."""
    return profile.punch.timeout + (profile.rendezvous.timeout if accepting else 0.0)


async def punch_and_launch(profile: Profile, local: Local, agreement: Agreement, report: Reporter,
                           opener: Opener | None = None, *, plan: Plan = DIRECT,
                           allocation: Allocation | None = None) -> int:
    """Punch along ``plan`` and run the payload; its exit code. The caller releases ``allocation``."""
    peer_id = agreement.peer.id
    relayed = plan.relay == "ours"
    if relayed and allocation is None:
        raise RelayError("internal: a relayed plan without an allocation")
    target = agreement.peer_relay if plan.relay == "theirs" and agreement.peer_relay else agreement.peer_endpoint
    port = local.port
    try:
        with phase(report, "punch", f"to {target[0]}:{target[1]} ({plan.path})", peer_id) as result:
            port, punched = await _punch(profile, local, agreement, plan, target, opener, allocation)
            result["message"] = f"handshake with {punched.peer[0]}:{punched.peer[1]} ({plan.path}" + \
                (f" via {allocation.server.url})" if relayed and allocation else ")")
            result.update(path=plan.path, sent=punched.stats.sent, received=punched.stats.received,
                          dropped=punched.stats.dropped)
            if allocation is not None and relayed:
                result.update(relay=allocation.server.url, relayed=list(allocation.relayed))
        inner = (local.inner[0], port.local[1])
    finally:
        port.close()  # the payload binds this port next, while the NAT mapping is warm
        local.port.close()
    bridge = await Bridge.open(allocation, punched.peer) if relayed and allocation is not None else None
    # Bridged: the payload binds a local port and sends to the bridge's, which relays to the peer.
    inner, outer, peer = (bridge.payload, bridge.allocation.relayed, bridge.end.local) if bridge \
        else (inner, local.outer, punched.peer)
    context = SessionContext(
        inner=inner, outer=outer, peer=peer, secret=agreement.secret, host_id=profile.host.id,
        peer_id=peer_id, role=agreement.role, peer_values=dict(agreement.peer_exports),
        vars=profile.payload_vars(agreement.peer))
    if bridge is None:
        return await run_payload(local.template, local.prepared, context, report)
    try:
        return await _run_bridged(local, context, report, bridge)
    finally:
        bridge.close()


async def _punch(profile: Profile, local: Local, agreement: Agreement, plan: Plan, target: Address,
                 opener: Opener | None, allocation: Allocation | None) -> tuple[UdpPort, PunchResult]:
    accepting = agreement.role == "accept"
    timeout = punch_window(profile, accepting)
    hops, interval = profile.punch.hops, profile.punch.interval
    secret, session_id = agreement.secret, agreement.session_id
    if plan.relay == "ours" and allocation is not None:  # through our allocation, toward the peer's endpoint
        if opener is not None:
            opener.stop()
        punched = await handshake(allocation, target, secret, session_id, accepting=accepting, hops=hops,
                                  timeout=timeout, interval=interval)
        return local.port, punched
    if plan.probe == "race":  # we are the hard side: many sockets, the first to be heard wins
        if opener is not None:
            opener.stop()
        return await race(local.port, target, secret, session_id, accepting=accepting, hops=hops, timeout=timeout,
                          interval=interval)
    spray = spray_toward(target[0]) if plan.probe == "spray" else None
    # To the peer's relayed address we lead: the relay has no NAT to spare, only a permission that lets us in.
    punched = await handshake(local.port, target, secret, session_id, accepting=accepting, hops=hops,
                              timeout=timeout, interval=interval, opener=opener,
                              lead=plan.lead or plan.relay == "theirs", spray=spray)
    return local.port, punched


async def _run_bridged(local: Local, context: SessionContext, report: Reporter, bridge: Bridge) -> int:
    """The payload on the bridge's local port; a RelayError if the allocation is lost while it runs."""
    loop = asyncio.get_running_loop()
    payload = loop.create_task(run_payload(local.template, local.prepared, context, report))
    lost = loop.create_task(bridge.wait_lost())
    try:
        done, _ = await asyncio.wait({payload, lost}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError as cancel:
        payload.cancel(*cancel.args)  # pass on the signal name ("SIGINT") the payload is to get
        raise
    finally:
        lost.cancel()
        if not payload.done():
            payload.cancel()  # the relay is gone: stop the payload (SIGTERM)
        with contextlib.suppress(BaseException):
            await asyncio.gather(payload, lost, return_exceptions=True)
    if payload in done:
        return payload.result()
    raise RelayError(f"the relay path to {context.peer_id} is gone: {lost.result()}",
                     hint="the TURN server restarted or became unreachable; the restart policy decides")
