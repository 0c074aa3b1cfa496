"""`plexus up`: the whole pipeline — NAT discovery, offer exchange, punch, launch — for one profile.

Library API: ``await up(profile, report)`` returns when the payload ends (initiate) or when cancelled (accept).
An initiator connects to its peers (all, or those named) and applies the restart policy: each restart is a new
rendezvous and punch, since the public mapping may have changed. An acceptor serves every configured peer, each
invite in its own task with its own UDP port, session and payload; one broken peer never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from plexus.errors import NatError, PlexusError, ProfileError, RendezvousError
from plexus.events import Event, Reporter, discard, phase
from plexus.launch.runner import run_payload
from plexus.launch.template import Prepared, SessionContext, Template, find_template, prepare
from plexus.nat import Mapping, discover, punchable
from plexus.profile.model import Peer, Profile
from plexus.punch import Opener, handshake
from plexus.punch.paths import NO_PATH, Plan, direct_plan
from plexus.punch.probing import race, spray_toward
from plexus.punch.target import unusable_target
from plexus.rendezvous import OfferExchange, open_exchange
from plexus.rendezvous.base import Agreement, Carrier, Exchange, Invite, LocalOffer, PeerRefused
from plexus.rendezvous.offer import Offer
from plexus.udp import UdpPort

log = logging.getLogger("plexus.session")

DIRECT = Plan()


@dataclass
class _Local:
    """One session's local side: the port that asked STUN, what STUN saw, and the payload's fresh keys."""

    port: UdpPort
    inner: tuple[str, int]  # our local address as the kernel routes toward STUN (not 0.0.0.0), and the port
    outer: tuple[str, int]
    mapping: Mapping
    template: Template
    prepared: Prepared

    def offer(self) -> LocalOffer:
        return LocalOffer(self.outer, self.mapping, dict(self.prepared.exports))


def _template(profile: Profile) -> Template:
    return find_template(profile.payload.template, profile.path.parent if profile.path else None)


async def _discover(profile: Profile, port: UdpPort, report: Reporter,
                    peer: str | None) -> tuple[tuple[str, int], tuple[str, int], Mapping]:
    with phase(report, "nat", "asking STUN", peer) as result:
        found = await discover(port, profile.stun)
        result["message"] = f"public {found.outer[0]}:{found.outer[1]}, {found.mapping} mapping"
        result.update(inner=list(found.inner), outer=list(found.outer), mapping=found.mapping)
    return found.inner, found.outer, found.mapping


async def _punch_and_launch(profile: Profile, local: _Local, agreement: Agreement, report: Reporter,
                            opener: Opener | None = None, *, plan: Plan = DIRECT) -> int:
    peer_id = agreement.peer.id
    accepting = agreement.role == "accept"
    timeout = _punch_window(profile, accepting)
    path = "probed" if plan.probe else "direct"
    port = local.port
    try:
        with phase(report, "punch", f"to {agreement.peer_endpoint[0]}:{agreement.peer_endpoint[1]} ({path})",
                   peer_id) as result:
            hops, interval = profile.punch.hops, profile.punch.interval
            if plan.probe == "race":  # we are the hard side: many sockets, the first to be heard wins
                if opener is not None:
                    opener.stop()
                port, punched = await race(local.port, agreement.peer_endpoint, agreement.secret,
                                           agreement.session_id, accepting=accepting, hops=hops, timeout=timeout,
                                           interval=interval)
            else:
                spray = spray_toward(agreement.peer_endpoint[0]) if plan.probe == "spray" else None
                punched = await handshake(local.port, agreement.peer_endpoint, agreement.secret,
                                          agreement.session_id, accepting=accepting, hops=hops, timeout=timeout,
                                          interval=interval, opener=opener, lead=plan.lead, spray=spray)
            inner = (local.inner[0], port.local[1])
            result["message"] = f"handshake with {punched.peer[0]}:{punched.peer[1]} ({path})"
            result.update(path=path, sent=punched.stats.sent, received=punched.stats.received,
                          dropped=punched.stats.dropped)
    finally:
        port.close()  # the payload binds this port next, while the NAT mapping is warm
        local.port.close()
    context = SessionContext(
        inner=inner, outer=local.outer, peer=punched.peer, secret=agreement.secret, host_id=profile.host.id,
        peer_id=peer_id, role=agreement.role, peer_values=dict(agreement.peer_exports),
        vars=profile.payload_vars(agreement.peer))
    return await run_payload(local.template, local.prepared, context, report)


def _punch_window(profile: Profile, accepting: bool) -> float:
    """How long to punch. The acceptor cannot know when its answer reaches the initiator (a slow or lossy
    mailbox may take most of the initiator's rendezvous timeout), so it keeps its side open that much longer."""
    return profile.punch.timeout + (profile.rendezvous.timeout if accepting else 0.0)


def _hard_nat_notice(mapping: Mapping, report: Reporter, peer: str) -> None:
    ok, reason = punchable(mapping)
    if not ok:  # the peer's mapping decides the path (plexus.punch.paths)
        report(Event("nat", "warn", f"{reason.split(';')[0]}: a peer with a public address is reached directly, "
                     "one behind an endpoint-independent NAT by probing, one behind a NAT like ours not at all",
                     peer))


# --- initiate -----------------------------------------------------------------------------------------------


async def _initiate_once(profile: Profile, connected: asyncio.Task[Exchange], peer: Peer, report: Reporter) -> int:
    port = await UdpPort.bind(profile.stun.bind)
    try:
        inner, outer, mapping = await _discover(profile, port, report, peer.id)  # while the mailbox connects
        exchange = await connected
        _hard_nat_notice(mapping, report, peer.id)
        template = _template(profile)
        local = _Local(port, inner, outer, mapping, template, prepare(template))
        report(Event("offer-sent", "start", f"invite to {peer.id}", peer.id))
        started = time.monotonic()
        try:
            agreement = await exchange.invite(peer, local.offer())  # the trace reports "offer-sent ok"
        except PeerRefused as error:
            report(Event("offer-received", "fail", str(error), peer.id, time.monotonic() - started))
            if NO_PATH in error.message:  # the NATs, not the peer: the same exit as a NAT refusal of our own
                raise NatError(error.message, hint="plexus nat explains this side's NAT") from error
            raise
        except PlexusError as error:
            report(Event("offer-received", "fail", str(error), peer.id, time.monotonic() - started))
            raise
        report(Event("offer-received", "ok", f"accept from {peer.id}", peer.id, time.monotonic() - started,
                     {"peer_endpoint": list(agreement.peer_endpoint), "peer_nat": agreement.peer_nat}))
        unusable = unusable_target(agreement.peer_endpoint, outer, inner)
        if unusable is not None:
            raise RendezvousError(f"{peer.id}'s accept names an endpoint we will not punch toward: {unusable}",
                                  hint="the peer's STUN result is wrong, or the peer is not what it claims")
        plan = direct_plan(mapping, agreement.peer_nat, us=profile.host.id, them=peer.id)
        if isinstance(plan, str):  # the acceptor should have refused; never punch where it cannot work
            raise NatError(plan)
        return await _punch_and_launch(profile, local, agreement, report, plan=plan)
    finally:
        port.close()


async def _initiate(profile: Profile, connected: asyncio.Task[Exchange], peer: Peer, report: Reporter) -> int:
    policy = profile.payload.restart
    if policy == "always":
        report(Event("launch", "info", "restart policy 'always': the payload is restarted whenever it ends",
                     peer.id))
    restarts = 0
    while True:
        try:
            code = await _initiate_once(profile, connected, peer, report)
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


# --- accept -------------------------------------------------------------------------------------------------


async def _answer(profile: Profile, exchange: Exchange, invite: Invite, report: Reporter) -> int:
    peer_id = invite.peer.id
    port = await UdpPort.bind(profile.stun.bind)
    try:
        inner, outer, mapping = await _discover(profile, port, report, peer_id)
        plan = direct_plan(mapping, invite.nat, us=profile.host.id, them=peer_id)
        if isinstance(plan, str):
            await exchange.refuse(invite, plan)
            raise NatError(plan)
        unusable = unusable_target(invite.endpoint, outer, inner)
        if unusable is not None:  # an authenticated peer must not aim our packets at our own hosts or ports
            with contextlib.suppress(PlexusError):
                await exchange.refuse(invite, f"your endpoint is unusable: {unusable}")
            raise RendezvousError(f"dropped the invite from {peer_id}: {unusable}")
        template = _template(profile)
        local = _Local(port, inner, outer, mapping, template, prepare(template))
        # Open our NAT toward the peer before our answer leaves: by the time the initiator punches, the hole exists.
        opener = Opener(port, invite.endpoint, profile.punch.hops, profile.punch.interval,
                        _punch_window(profile, accepting=True))
        opener.start()
        try:
            with phase(report, "offer-sent", f"accept to {peer_id}", peer_id):
                agreement = await exchange.answer(invite, local.offer())
            return await _punch_and_launch(profile, local, agreement, report, opener, plan=plan)
        finally:
            opener.stop()
    finally:
        port.close()


async def _accept(profile: Profile, exchange: Exchange, report: Reporter) -> int:
    sessions: dict[str, asyncio.Task[int]] = {}

    async def serve(invite: Invite) -> int:
        try:
            return await _answer(profile, exchange, invite, report)
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
                         data={"peer_endpoint": list(invite.endpoint), "peer_nat": invite.nat}))
            busy = _fixed_port_busy(profile, sessions, invite.peer.id)
            if busy is not None:
                report(Event("session", "fail", busy, invite.peer.id))
                with contextlib.suppress(PlexusError):
                    await exchange.refuse(invite, busy)
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


def _fixed_port_busy(profile: Profile, sessions: dict[str, asyncio.Task[int]], peer_id: str) -> str | None:
    """A fixed ``stun.bind`` port serves one session at a time (two sessions on one port would steal each
    other's datagrams and their payloads could not bind it): why this invite must wait, or None."""
    port = profile.stun.bind.port
    holders = [other for other, task in sessions.items() if other != peer_id and not task.done()]
    if port == 0 or not holders:
        return None
    return (f"busy: our fixed UDP port {port} (stun.bind) is in use by the session with {holders[0]}; "
            "try again when it ends, or have the acceptor use port 0")


# --- the pipeline -------------------------------------------------------------------------------------------


async def up(profile: Profile | str | os.PathLike[str], report: Reporter | None = None, *,
             peers: Sequence[str] | None = None, carrier: Carrier | None = None) -> int:
    """Run the whole pipeline for a profile (a ``Profile``, or a name or path to load). An initiator returns the
    payload's exit code when it ends; an acceptor serves invites until it is cancelled.

    ``report`` gets every progress ``Event`` (default: none); ``peers`` limits an initiator to these peer ids;
    ``carrier`` replaces the profile's rendezvous transport with one of your own (a ``plexus.rendezvous.base.
    Carrier``: offers are still authenticated as the profile says). A ``PlexusError`` says what failed::

        import asyncio, plexus
        code = asyncio.run(plexus.up("laptop", print))
    """
    if not isinstance(profile, Profile):
        from plexus.profile import load

        profile = load(os.fspath(profile))
    report = report or discard
    for warning in profile.warnings:
        report(Event("profile", "warn", warning))
    from plexus.profile.secrets import resolve_secrets

    await resolve_secrets(profile)  # secret commands, without blocking: Ctrl-C stops them at once
    selected = list(profile.peers)
    if peers:
        unknown = [p for p in peers if profile.peer(p) is None]
        if unknown:
            raise ProfileError(f"{profile.name}: no peer {unknown[0]!r} in the profile",
                               hint=f"peers: {', '.join(p.id for p in profile.peers)}")
        selected = [p for p in profile.peers if p.id in peers]
    _template(profile)  # a missing template fails now, not after the rendezvous

    def trace(direction: str, offer: Offer) -> None:
        if direction == "sent" and offer.kind == "invite":  # the offer is made just before it is sent
            report(Event("offer-sent", "ok", f"invite to {offer.recipient}", offer.recipient,
                         max(0.0, time.time() - offer.time)))

    exchange = open_exchange(profile, trace=trace) if carrier is None else OfferExchange(profile, carrier,
                                                                                          trace=trace)

    async def connect() -> Exchange:
        mailbox = carrier is None and profile.rendezvous.email is not None
        what = "mailbox" if mailbox else "DHT node" if carrier is None else type(carrier).__name__
        with phase(report, "mailbox" if mailbox else "rendezvous", f"connecting the {what}") as result:
            await exchange.__aenter__()
            result["message"] = f"{what} connected"
        return exchange

    connected = asyncio.get_running_loop().create_task(connect())
    try:
        if profile.role == "accept":
            return await _accept(profile, await connected, report)
        results = await asyncio.gather(*(_initiate(profile, connected, peer, report) for peer in selected),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(results) == 1 and errors:
            raise errors[0]
        codes = []
        for peer, result in zip(selected, results, strict=True):
            if isinstance(result, PlexusError):
                report(Event("session", "fail", str(result), peer.id))
                codes.append(result.exit_code)
            elif isinstance(result, BaseException):
                raise result
            else:
                codes.append(result)
        return max(codes) if codes else 0
    finally:
        if not connected.done():
            connected.cancel()
        with contextlib.suppress(BaseException):
            await connected
        if connected.done() and not connected.cancelled() and connected.exception() is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(exchange.__aexit__(None, None, None))
