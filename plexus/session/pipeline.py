"""`plexus up`: the whole pipeline — NAT discovery, offer exchange, punch (direct, probed or relayed), launch —
for one profile.

Library API: ``await up(profile, report)`` returns when the payload ends (initiate) or when cancelled (accept).
An initiator connects to its peers (all, or those named: ``initiate``); an acceptor serves every configured peer
(``accept``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence

from plexus.errors import PlexusError, ProfileError
from plexus.events import Event, Reporter, discard, phase
from plexus.profile.model import Profile
from plexus.rendezvous import OfferExchange, open_exchange
from plexus.rendezvous.base import Carrier, Exchange
from plexus.rendezvous.offer import Offer
from plexus.session.accept import accept
from plexus.session.connect import FilteringProbe, template_of
from plexus.session.initiate import initiate

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
    template_of(profile)  # a missing template fails now, not after the rendezvous

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
    probe = FilteringProbe(profile)
    try:
        if profile.role == "accept":
            return await accept(profile, await connected, report, probe)
        results = await asyncio.gather(*(initiate(profile, connected, peer, report, probe) for peer in selected),
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
        probe.close()
        if not connected.done():
            connected.cancel()
        with contextlib.suppress(BaseException):
            await connected
        if connected.done() and not connected.cancelled() and connected.exception() is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(exchange.__aexit__(None, None, None))
