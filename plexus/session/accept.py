"""The accepting side of ``plexus up``: serve every configured peer, each invite in its own task with its own UDP
port, session and payload; one broken peer never stops the others. For each invite the acceptor chooses the
path (``plexus.punch.paths.acceptor_plan``), allocates on the relay when it is the one to, and says its choice
in the accept.
"""

from __future__ import annotations

import asyncio
import contextlib

from plexus.errors import NatError, PlexusError, RelayError, RendezvousError
from plexus.events import Event, Reporter, phase
from plexus.launch.template import prepare
from plexus.nat.behaviour import quiet_wait
from plexus.nat.mapping import HARD
from plexus.profile.model import Profile
from plexus.punch import Opener
from plexus.punch.paths import acceptor_plan
from plexus.punch.target import unusable_target
from plexus.relay import Allocation
from plexus.rendezvous.base import Exchange, Invite
from plexus.session.connect import (
    FilteringProbe,
    Local,
    allocate_relay,
    discover_nat,
    punch_and_launch,
    punch_window,
    template_of,
)
from plexus.udp import UdpPort


async def _refuse(exchange: Exchange, invite: Invite, reason: str) -> None:
    with contextlib.suppress(PlexusError):
        await exchange.refuse(invite, reason)


async def answer(profile: Profile, exchange: Exchange, invite: Invite, report: Reporter,
                 probe: FilteringProbe) -> int:
    peer_id = invite.peer.id
    port = await UdpPort.bind(profile.stun.bind)
    allocation: Allocation | None = None
    try:
        inner, outer, mapping = await discover_nat(profile, port, report, peer_id)
        # Our filtering matters only toward a hard NAT (full cone spares the probing): wait for it only then.
        filtering = await probe.wait(quiet_wait(profile.stun, 0.0)) if invite.nat in HARD else probe.known()
        plan = acceptor_plan(mapping, invite.nat, us=profile.host.id, them=peer_id, relay=profile.relay,
                             their_relay=invite.relay is not None, their_path=invite.path,
                             our_filtering=filtering, their_filtering=invite.filtering)
        if isinstance(plan, str):
            await _refuse(exchange, invite, plan)
            raise NatError(plan)
        targets = [invite.endpoint] + ([invite.relay] if plan.relay == "theirs" and invite.relay else [])
        for target in targets:
            unusable = unusable_target(target, outer, inner)
            if unusable is not None:  # an authenticated peer must not aim our packets at our own hosts or ports
                await _refuse(exchange, invite, f"your endpoint is unusable: {unusable}")
                raise RendezvousError(f"dropped the invite from {peer_id}: {unusable}")
        if plan.relay == "ours":
            try:
                allocation = await allocate_relay(profile, report, peer_id)
                await allocation.permit(invite.endpoint)  # before the accept leaves: the peer may send at once
            except RelayError as error:
                await _refuse(exchange, invite, f"our relay is unavailable: {error.message}")
                raise
        template = template_of(profile)
        local = Local(port, inner, outer, mapping, template, prepare(template))
        opener = None
        if not plan.relay:  # open our NAT toward the peer before our answer leaves: the hole exists in time
            opener = Opener(port, invite.endpoint, profile.punch.hops, profile.punch.interval,
                            punch_window(profile, accepting=True))
            opener.start()
        try:
            with phase(report, "offer-sent", f"accept to {peer_id} ({plan.path})", peer_id):
                agreement = await exchange.answer(invite, local.offer(filtering=filtering, relay=allocation,
                                                                      path=plan.path))
            return await punch_and_launch(profile, local, agreement, report, opener, plan=plan,
                                          allocation=allocation)
        finally:
            if opener is not None:
                opener.stop()
    finally:
        port.close()
        if allocation is not None:
            await asyncio.shield(allocation.release())


async def accept(profile: Profile, exchange: Exchange, report: Reporter, probe: FilteringProbe) -> int:
    sessions: dict[str, asyncio.Task[int]] = {}

    async def serve(invite: Invite) -> int:
        try:
            return await answer(profile, exchange, invite, report, probe)
        except PlexusError as error:
            report(Event("session", "fail", str(error), invite.peer.id))
            return error.exit_code

    report(Event("offer-received", "start", f"waiting for invites from {', '.join(p.id for p in profile.peers)}"))
    try:
        async for invite in exchange.invites():
            if invite.refusal:
                report(Event("offer-received", "warn", f"{invite.peer.id} cannot connect: {invite.refusal}",
                             invite.peer.id))
                continue
            report(Event("offer-received", "ok", f"invite from {invite.peer.id}", invite.peer.id,
                         data={"peer_endpoint": list(invite.endpoint), "peer_nat": invite.nat,
                               "peer_path": invite.path}))
            busy = fixed_port_busy(profile, sessions, invite.peer.id)
            if busy is not None:
                report(Event("session", "fail", busy, invite.peer.id))
                await _refuse(exchange, invite, busy)
                continue
            previous = sessions.pop(invite.peer.id, None)
            if previous is not None and not previous.done():
                # A new invite from the same peer replaces its old session (it restarted on its side).
                previous.cancel()
                with contextlib.suppress(BaseException):
                    await previous
            sessions[invite.peer.id] = asyncio.get_running_loop().create_task(serve(invite))
    finally:
        for task in sessions.values():
            task.cancel()
        if sessions:
            await asyncio.gather(*sessions.values(), return_exceptions=True)
    return 0


def fixed_port_busy(profile: Profile, sessions: dict[str, asyncio.Task[int]], peer_id: str) -> str | None:
    """A fixed ``stun.bind`` port serves one session at a time (two sessions on one port would steal each
    other's datagrams and their payloads could not bind it): why this invite must wait, or None."""
    port = profile.stun.bind.port
    holders = [other for other, task in sessions.items() if other != peer_id and not task.done()]
    if port == 0 or not holders:
        return None
    return (f"busy: our fixed UDP port {port} (stun.bind) is in use by the session with {holders[0]}; "
            "try again when it ends, or have the acceptor use port 0")
