"""``OfferExchange``: the rendezvous roles over any ``Carrier`` (mailbox today, DHT later).

One receive task reads the carrier and only authenticates, checks and dispatches: an accept or refusal resolves
the waiting ``invite()`` whose nonce it answers, an invite goes to the ``invites()`` queue. Per-peer work (STUN,
answering, punching) runs in the caller's tasks, so one slow or broken peer never holds up the others. Every
dropped document gives one log line on ``plexus.rendezvous``; nothing a sender does raises out of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from plexus.errors import RendezvousError
from plexus.profile.model import Peer, Profile
from plexus.rendezvous.auth import Authenticator, AuthError, authenticator_for
from plexus.rendezvous.base import Agreement, Carrier, Document, Invite, LocalOffer, PeerRefused
from plexus.rendezvous.freshness import Freshness, replay_file
from plexus.rendezvous.offer import Offer, OfferError
from plexus.rendezvous.secret import Ephemeral, derive
from plexus.state import state_dir

log = logging.getLogger("plexus.rendezvous")

MAX_QUEUED_INVITES = 256
WITHDRAW_TIMEOUT = 3.0  # bound on sending a withdrawal while stopping

Trace = Callable[[str, Offer], None]  # ("sent" | "received", offer): for benchmarks and tests


@dataclass
class _Waiting:
    peer: Peer
    ephemeral: Ephemeral
    future: asyncio.Future[Agreement]


class OfferExchange:
    """Implements ``plexus.rendezvous.base.Exchange``: authenticated offers over ``carrier``."""

    def __init__(self, profile: Profile, carrier: Carrier, authenticator: Authenticator | None = None, *,
                 trace: Trace | None = None) -> None:
        self.profile = profile
        self.carrier = carrier
        self.authenticator = authenticator or authenticator_for(profile)
        self._trace = trace
        settings = profile.rendezvous
        # offers taken are remembered in the state folder, so that a restart does not reopen replays
        self.freshness = Freshness(settings.max_age, settings.skew,
                                   store=replay_file(state_dir(), profile.host.id))
        self._waiting: dict[bytes, _Waiting] = {}
        self._withdrawn: set[bytes] = set()  # nonces of invites their initiator withdrew
        self._invites: asyncio.Queue[Invite | BaseException] = asyncio.Queue(MAX_QUEUED_INVITES)
        self._receiver: asyncio.Task[None] | None = None

    async def __aenter__(self) -> OfferExchange:
        await self.carrier.__aenter__()
        self.freshness.started = time.time()
        self._receiver = asyncio.create_task(self._receive(), name="plexus-rendezvous-receive")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._receiver
        await self.carrier.__aexit__(*exc)

    # -- initiator ---------------------------------------------------------------------------------------------

    async def invite(self, peer: Peer, local: LocalOffer) -> Agreement:
        timeout = self.profile.rendezvous.timeout
        ephemeral = Ephemeral()
        offer = self._offer("invite", peer, local, ephemeral)
        waiting = _Waiting(peer, ephemeral, asyncio.get_running_loop().create_future())
        self._waiting[offer.nonce] = waiting
        answered = False
        try:
            self.carrier.expect_reply(timeout)
            await self._send(peer, offer)
            agreement = await asyncio.wait_for(asyncio.shield(waiting.future), timeout)
            answered = True
            return agreement
        except TimeoutError:
            # The peer drops what it cannot verify without a word (an answer would help forgers), so all we
            # can do is name the likely causes.
            raise RendezvousError(
                f"peer {peer.id!r} did not answer within {timeout:g} s",
                hint=f"likely: plexus is not running on {peer.id!r}, or its profile does not list "
                     f"{self.profile.host.id!r} among its peers; a wrong key or certificate on either side (the "
                     "peer drops offers it cannot verify: see its log); or the mail is delayed (raise "
                     "rendezvous.timeout)") from None
        finally:
            self._waiting.pop(offer.nonce, None)
            if not answered and not (waiting.future.done() and not waiting.future.cancelled()
                                     and isinstance(waiting.future.exception(), PeerRefused)):
                await self._withdraw(peer, offer.nonce)

    async def _withdraw(self, peer: Peer, nonce: bytes) -> None:
        """We gave up on an invite (timeout, Ctrl-C): tell the peer, so that it does not answer it later and
        its mailbox does not keep an invite nobody waits for. Best effort, bounded in time."""
        withdrawal = self._refusal(peer, "withdrawn: the initiator stopped waiting", nonce)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._send(peer, withdrawal), WITHDRAW_TIMEOUT)

    async def notify_refusal(self, peer: Peer, reason: str) -> None:
        await self._send(peer, self._refusal(peer, reason, None))

    # -- acceptor ----------------------------------------------------------------------------------------------

    async def invites(self) -> AsyncIterator[Invite]:
        while True:
            item = await self._invites.get()
            if isinstance(item, BaseException):
                self._invites.put_nowait(item)  # every later reader fails the same way
                raise item
            yield item

    async def answer(self, invite: Invite, local: LocalOffer) -> Agreement:
        if invite.nonce in self._withdrawn:
            raise RendezvousError(f"peer {invite.peer.id!r} withdrew its invite before we answered")
        ephemeral = Ephemeral()
        try:
            shared = ephemeral.shared(invite.key)
        except ValueError:
            raise RendezvousError(f"peer {invite.peer.id!r} sent an unusable key") from None
        offer = self._offer("accept", invite.peer, local, ephemeral, reply_to=invite.nonce)
        keys = derive(shared, invite.nonce, offer.nonce, invite.peer.id, self.profile.host.id)
        await self._send(invite.peer, offer)
        return Agreement(invite.peer, "accept", invite.endpoint, invite.nat, dict(invite.exports), keys.secret,
                         keys.session_id, invite.filtering, invite.relay, invite.path)

    async def refuse(self, invite: Invite, reason: str) -> None:
        await self._send(invite.peer, self._refusal(invite.peer, reason, invite.nonce))

    # -- sending -----------------------------------------------------------------------------------------------

    def _offer(self, kind: str, peer: Peer, local: LocalOffer, ephemeral: Ephemeral,
               reply_to: bytes | None = None) -> Offer:
        return Offer(kind=kind, sender=self.profile.host.id, recipient=peer.id,  # type: ignore[arg-type]
                     nonce=Offer.new_nonce(), time=time.time(), endpoint=local.endpoint, nat=local.nat,
                     filtering=local.filtering, relay=local.relay, path=local.path, key=ephemeral.public,
                     exports=dict(local.exports), reply_to=reply_to)

    def _refusal(self, peer: Peer, reason: str, reply_to: bytes | None) -> Offer:
        return Offer(kind="refuse", sender=self.profile.host.id, recipient=peer.id, nonce=Offer.new_nonce(),
                     time=time.time(), reply_to=reply_to, reason=reason[:500])

    async def _send(self, peer: Peer, offer: Offer) -> None:
        try:
            document = self.authenticator.seal(offer.encode(), peer)
        except (AuthError, OfferError) as error:
            raise RendezvousError(f"cannot send the {offer.kind} to {peer.id!r}: {error}") from error
        await self.carrier.publish(peer, document, self.authenticator.media_type)
        if self._trace:
            self._trace("sent", offer)

    # -- receiving ---------------------------------------------------------------------------------------------

    async def _receive(self) -> None:
        try:
            async for document in self.carrier.documents():
                self.dispatch(document)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the carrier gave up: everybody waiting learns why
            failure = error if isinstance(error, RendezvousError) else RendezvousError(
                f"rendezvous receiver failed: {type(error).__name__}: {error}")
            for waiting in self._waiting.values():
                if not waiting.future.done():
                    waiting.future.set_exception(failure)
            with contextlib.suppress(asyncio.QueueFull):
                self._invites.put_nowait(failure)

    def dispatch(self, document: Document) -> None:
        """Authenticate, check and route one received document; drops it with one log line when it fails."""
        try:
            self._dispatch(document)
        except Exception as error:  # a bug must not end the receive loop either
            log.error("rendezvous: dropped %s: unexpected %s: %s", document.origin, type(error).__name__, error)

    def _dispatch(self, document: Document) -> None:
        def drop(reason: str) -> None:
            log.warning("rendezvous: dropped %s: %s", document.origin, reason)

        try:
            opened = self.authenticator.open(document.data)
            offer = Offer.decode(opened.offer)
        except (AuthError, OfferError) as error:
            return drop(str(error))
        if offer.recipient != self.profile.host.id:
            return drop(f"{offer.kind} addressed to {offer.recipient!r}, not to us ({self.profile.host.id!r})")
        peer = self.profile.peer(offer.sender)
        if peer is None:
            return drop(f"{offer.kind} from unknown sender {offer.sender!r} (not among our peers)")
        if not self.authenticator.vouch(opened, peer):
            smime = self.authenticator.method == "smime"
            proof = "signed by its certificate" if smime else "authenticated with its key"
            return drop(f"{offer.kind} claims to be from {peer.id!r} but is not {proof}")
        reason = self.freshness.check(offer)
        if reason:
            return drop(f"{offer.kind} from {peer.id!r}: {reason}")
        if self._trace:
            self._trace("received", offer)
        if offer.kind == "invite" or (offer.kind == "refuse" and offer.reply_to is None):
            return self._queue_invite(peer, offer, drop)
        waiting = self._waiting.get(offer.reply_to or b"")
        if offer.kind == "refuse" and waiting is None and offer.reply_to is not None:
            self._withdrawn.add(offer.reply_to)  # the initiator withdrew its invite: never answer it
            log.info("rendezvous: %s withdrew an invite (%s)", peer.id, offer.reason)
            return None
        if waiting is None or waiting.peer.id != peer.id or waiting.future.done():
            return drop(f"{offer.kind} from {peer.id!r} answers no invite we are waiting for")
        if offer.kind == "refuse":
            waiting.future.set_exception(PeerRefused(f"peer {peer.id!r} refused: {offer.reason}"))
            return None
        assert offer.key is not None and offer.endpoint is not None and offer.nat is not None
        try:
            shared = waiting.ephemeral.shared(offer.key)
        except ValueError:
            return drop(f"accept from {peer.id!r} carries an unusable key")
        keys = derive(shared, offer.reply_to or b"", offer.nonce, self.profile.host.id, peer.id)
        waiting.future.set_result(Agreement(peer, "initiate", offer.endpoint, offer.nat, dict(offer.exports),
                                            keys.secret, keys.session_id, offer.filtering, offer.relay,
                                            offer.path))
        return None

    def _queue_invite(self, peer: Peer, offer: Offer, drop: Callable[[str], None]) -> None:
        if offer.kind == "invite":
            assert offer.key is not None and offer.endpoint is not None and offer.nat is not None
            invite = Invite(peer, offer.endpoint, offer.nat, exports=dict(offer.exports), nonce=offer.nonce,
                            key=offer.key, filtering=offer.filtering, relay=offer.relay, path=offer.path)
        else:
            invite = Invite(peer, ("0.0.0.0", 0), "", refusal=offer.reason, nonce=offer.nonce)
        try:
            self._invites.put_nowait(invite)
        except asyncio.QueueFull:
            drop(f"invite from {peer.id!r}: {MAX_QUEUED_INVITES} invites already wait to be answered")


if TYPE_CHECKING:  # mypy checks that OfferExchange is an Exchange and EmailCarrier a Carrier
    from plexus.rendezvous.base import Exchange
    from plexus.rendezvous.email.carrier import EmailCarrier

    def _conforms(exchange: OfferExchange, carrier: EmailCarrier) -> tuple[Exchange, Carrier]:
        return exchange, carrier
