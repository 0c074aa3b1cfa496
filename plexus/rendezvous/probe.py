"""Run one side of a rendezvous and print what happens as JSON lines (for tests, benchmarks and debugging):

    python3 -m plexus.rendezvous.probe PROFILE --accept [--count N]
    python3 -m plexus.rendezvous.probe PROFILE --invite PEER [--count N] [--gap MIN MAX]

Events: ready, sent / received (every offer, with unix time and a nonce tag), agreement (peer, endpoint,
session id and a fingerprint of the secret, never the secret), refused, error. Exit 0 when ``count``
agreements were made.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import sys
import time
from typing import Any

from plexus.errors import PlexusError
from plexus.rendezvous.base import Agreement, Invite, LocalOffer, PeerRefused
from plexus.rendezvous.email.carrier import EmailCarrier
from plexus.rendezvous.email.inbox import FAST_INTERVAL
from plexus.rendezvous.exchange import OfferExchange
from plexus.rendezvous.offer import Offer


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def fingerprint(secret: bytes) -> str:
    return hashlib.sha256(b"plexus probe fingerprint" + secret).hexdigest()[:16]


def report(agreement: Agreement) -> None:
    emit("agreement", peer=agreement.peer.id, role=agreement.role, peer_endpoint=list(agreement.peer_endpoint),
         peer_nat=agreement.peer_nat, exports=agreement.peer_exports, session_id=agreement.session_id.hex(),
         fingerprint=fingerprint(agreement.secret))


def trace(direction: str, offer: Offer) -> None:
    emit(direction, kind=offer.kind, sender=offer.sender, recipient=offer.recipient, nonce=offer.nonce.hex()[:16],
         reply_to=offer.reply_to.hex()[:16] if offer.reply_to else None, offer_time=offer.time)


async def accept(exchange: OfferExchange, local: LocalOffer, count: int, refuse: str | None) -> int:
    done = 0
    tasks: set[asyncio.Task[None]] = set()
    finished = asyncio.Queue[bool]()

    async def handle(invite: Invite) -> None:
        try:
            if invite.refusal is not None:
                emit("refused", peer=invite.peer.id, message=invite.refusal)
            elif refuse is not None:
                await exchange.refuse(invite, refuse)
            else:
                report(await exchange.answer(invite, local))
            finished.put_nowait(True)
        except PlexusError as error:
            emit("error", message=str(error))
            finished.put_nowait(False)

    async def receive() -> None:
        async for invite in exchange.invites():
            task = asyncio.create_task(handle(invite))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    receiver = asyncio.create_task(receive())
    try:
        while count == 0 or done < count:
            waiter = asyncio.ensure_future(finished.get())
            await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                waiter.cancel()
                receiver.result()
            done += 1 if waiter.result() else 0
    finally:
        receiver.cancel()
    return 0


async def initiate(exchange: OfferExchange, local: LocalOffer, peer_id: str, count: int,
                   gap: tuple[float, float]) -> int:
    peer = exchange.profile.peer(peer_id)
    if peer is None:
        emit("error", message=f"{peer_id!r} is not a peer of this profile")
        return 2
    failures = 0
    for index in range(count):
        if index:
            await asyncio.sleep(random.uniform(*gap))
        try:
            report(await exchange.invite(peer, local))
        except PeerRefused as error:
            emit("refused", peer=peer.id, message=str(error))
            failures += 1
        except PlexusError as error:
            emit("error", message=str(error))
            failures += 1
    return 1 if failures else 0


async def main_async(args: argparse.Namespace) -> int:
    from plexus.profile import load

    profile = load(args.profile)
    host, _, port = args.endpoint.rpartition(":")
    local = LocalOffer((host, int(port)), args.nat, dict(item.split("=", 1) for item in args.export))
    carrier = EmailCarrier(profile, fast_interval=None if args.no_fast else args.fast_interval,
                           steady_poll=args.steady_poll)
    async with OfferExchange(profile, carrier, trace=trace) as exchange:
        emit("ready", host=profile.host.id, idle=carrier.inbox.idle, uidplus=carrier.inbox.uidplus)
        if args.invite:
            return await initiate(exchange, local, args.invite, args.count, tuple(args.gap))
        return await accept(exchange, local, args.count, args.refuse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m plexus.rendezvous.probe", description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--invite", metavar="PEER")
    role.add_argument("--accept", action="store_true")
    parser.add_argument("--count", type=int, default=1, help="agreements to make (accept: 0 = forever)")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.0, 0.0), metavar=("MIN", "MAX"))
    parser.add_argument("--endpoint", default="198.18.0.1:40000", help="our endpoint to announce")
    parser.add_argument("--nat", default="endpoint-independent")
    parser.add_argument("--export", action="append", default=[], metavar="K=V")
    parser.add_argument("--refuse", metavar="REASON", help="accept: refuse every invite")
    parser.add_argument("--fast-interval", type=float, default=FAST_INTERVAL)
    parser.add_argument("--no-fast", action="store_true", help="no NOOP polling while an answer is expected")
    parser.add_argument("--steady-poll", type=float, default=None, help="NOOP cadence instead of IDLE")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
    try:
        return asyncio.run(main_async(args))
    except PlexusError as error:
        emit("error", message=str(error))
        return 4
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
