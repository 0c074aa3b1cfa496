"""The initiating side of ``plexus up``: discover, invite, follow the acceptor's choice of path, punch, launch,
and apply the restart policy (each restart is a new rendezvous and punch: the public mapping may have changed).

A direct punch that fails under relay policy ``fallback`` is retried at once through the relay (a new invite that
asks for path ``relayed``); that retry is not a restart.
"""

from __future__ import annotations

import asyncio
import time

from plexus.errors import NatError, PlexusError, ProfileError, PunchError, RelayError, RendezvousError
from plexus.events import Event, Reporter
from plexus.launch.template import prepare
from plexus.nat import Mapping, punchable
from plexus.profile.model import Peer, Profile
from plexus.punch.paths import NO_PATH, Plan, direct_plan, invite_path, wants_allocation
from plexus.punch.target import unusable_target
from plexus.relay import Allocation
from plexus.rendezvous.base import Agreement, Exchange, PeerRefused
from plexus.session.connect import FilteringProbe, Local, allocate_relay, discover_nat, punch_and_launch, template_of
from plexus.udp import UdpPort


def _hard_nat_notice(mapping: Mapping, report: Reporter, peer: str, relay: bool) -> None:
    ok, reason = punchable(mapping)
    if not ok:  # the peer's NAT decides the path (plexus.punch.paths)
        report(Event("nat", "warn", f"{reason.split(';')[0]}: a peer with a public address or a full-cone NAT "
                     "is reached directly, one behind an endpoint-independent NAT by probing, one behind a NAT "
                     f"like ours {'through the relay' if relay else 'only through a relay (relay.servers)'}",
                     peer))


async def _exchange(exchange: Exchange, peer: Peer, local: Local, report: Reporter, *, filtering: str | None,
                    allocation: Allocation | None, path: str | None) -> Agreement:
    report(Event("offer-sent", "start", f"invite to {peer.id}", peer.id))
    started = time.monotonic()
    try:
        agreement = await exchange.invite(peer, local.offer(filtering=filtering, relay=allocation, path=path))
    except PeerRefused as error:
        report(Event("offer-received", "fail", str(error), peer.id, time.monotonic() - started))
        if NO_PATH in error.message:  # the NATs, not the peer: the same exit as a NAT refusal of our own
            raise NatError(error.message, hint="plexus nat explains this side's NAT") from error
        raise
    except PlexusError as error:
        report(Event("offer-received", "fail", str(error), peer.id, time.monotonic() - started))
        raise
    report(Event("offer-received", "ok", f"accept from {peer.id}", peer.id, time.monotonic() - started,
                 {"peer_endpoint": list(agreement.peer_endpoint), "peer_nat": agreement.peer_nat,
                  "path": agreement.peer_path or "direct"}))
    return agreement


def _follow(profile: Profile, agreement: Agreement, local: Local, allocation: Allocation | None,
            filtering: str | None) -> Plan:
    """The plan the acceptor chose (its accept says the path), checked against what we can do."""
    peer = agreement.peer.id
    for name, target in (("endpoint", agreement.peer_endpoint), ("relayed address", agreement.peer_relay)):
        unusable = target and unusable_target(target, local.outer, local.inner)
        if unusable:
            raise RendezvousError(f"{peer}'s accept names a {name} we will not send to: {unusable}",
                                  hint="the peer's STUN or TURN result is wrong, or the peer is not what it claims")
    if agreement.peer_path == "relayed":
        if agreement.peer_relay is not None:
            return Plan(relay="theirs")
        if allocation is not None:
            return Plan(relay="ours")
        raise RelayError(f"{peer} chose the relay but names no relayed address, and we hold no allocation")
    plan = direct_plan(local.mapping, agreement.peer_nat, us=profile.host.id, them=peer, our_filtering=filtering,
                       their_filtering=agreement.peer_filtering)
    if isinstance(plan, str):  # the acceptor should have refused; never punch where it cannot work
        raise NatError(plan)
    return plan


async def initiate_once(profile: Profile, connected: asyncio.Task[Exchange], peer: Peer, report: Reporter,
                        probe: FilteringProbe, *, retry: bool = False) -> int:
    port = await UdpPort.bind(profile.stun.bind)
    allocation: Allocation | None = None
    try:
        inner, outer, mapping = await discover_nat(profile, port, report, peer.id)  # while the mailbox connects
        exchange = await connected
        if not retry:
            _hard_nat_notice(mapping, report, peer.id, profile.relay.usable)
        if wants_allocation(profile.relay, mapping, retry=retry):
            try:
                allocation = await allocate_relay(profile, report, peer.id)
            except RelayError:
                if retry or profile.relay.policy == "always":
                    raise
                # only likely to be needed: the peer's NAT or relay may still do
        template = template_of(profile)
        local = Local(port, inner, outer, mapping, template, prepare(template))
        filtering = probe.known()
        agreement = await _exchange(exchange, peer, local, report, filtering=filtering, allocation=allocation,
                                    path=invite_path(profile.relay, retry=retry))
        plan = _follow(profile, agreement, local, allocation, filtering)
        if plan.relay == "ours" and allocation is not None:
            await allocation.permit(agreement.peer_endpoint)
        elif allocation is not None:  # not needed after all
            await allocation.release()
            allocation = None
        return await punch_and_launch(profile, local, agreement, report, plan=plan, allocation=allocation)
    finally:
        port.close()
        if allocation is not None:
            await asyncio.shield(allocation.release())


async def _attempt(profile: Profile, connected: asyncio.Task[Exchange], peer: Peer, report: Reporter,
                   probe: FilteringProbe) -> int:
    """One session; a failed direct punch is retried through the relay unless the policy is never."""
    try:
        return await initiate_once(profile, connected, peer, report, probe)
    except RelayError:
        raise
    except PunchError as error:
        if profile.relay.policy == "never":
            raise
        report(Event("punch", "warn", f"{error.message}; trying the relay", peer.id))
        try:
            return await initiate_once(profile, connected, peer, report, probe, retry=True)
        except (NatError, PeerRefused) as refused:  # no relay on either side: the punch failure is the news
            raise PunchError(error.message, hint=f"{error.hint or ''} (the relay is no way out: "
                             f"{refused.message})".strip()) from refused


async def initiate(profile: Profile, connected: asyncio.Task[Exchange], peer: Peer, report: Reporter,
                   probe: FilteringProbe) -> int:
    policy = profile.payload.restart
    if policy == "always":
        report(Event("launch", "info", "restart policy 'always': the payload is restarted whenever it ends",
                     peer.id))
    restarts = 0
    while True:
        try:
            code = await _attempt(profile, connected, peer, report, probe)
        except (PeerRefused, NatError, ProfileError):
            raise  # restarting cannot help
        except PlexusError as error:
            if restarts == 0 or policy == "never":
                raise
            report(Event("session", "fail", str(error), peer.id))
            code = error.exit_code
        if policy == "never" or (policy == "on-failure" and code == 0):
            return code
        if restarts >= profile.payload.max_restarts:
            report(Event("session", "fail", f"gave up after {restarts} restarts", peer.id))
            return code
        restarts += 1
        report(Event("launch", "info", f"restart {restarts}/{profile.payload.max_restarts} after exit {code}: "
                     "new rendezvous and punch", peer.id, data={"restart": restarts, "exit_code": code}))
        await asyncio.sleep(profile.payload.restart_delay)
