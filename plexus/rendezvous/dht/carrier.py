"""OpenDHT as a rendezvous carrier: the same offers as the mailbox, put on and read from a DHT.

Each host listens on one DHT key: SHA-1 of its certificate's SHA-256 fingerprint (hex) followed by the profile's
``rendezvous.dht.app``; an offer for a peer is put on the peer's key. A value is the offer document exactly as
the email transport carries it, sealed by the offer's own authentication (``plexus.rendezvous.auth``, S/MIME):
signed with the sender's key and encrypted to the recipient's certificate, then checked by ``OfferExchange`` for
forgery, misaddressing, staleness and replay like any mailed offer.

Why not opendht's own identities (``putSigned`` / ``putEncrypted``): the opendht 4.x Python binding can generate
a private key but neither save nor load one, so such an identity would change at every run and a peer could
never pin it; and it would only repeat the checks the offer layer makes anyway. Hence the DHT requires
``authentication: smime`` (values on a DHT can be read and written by anyone; a PSK HMAC would not hide the
endpoint) and pinned peer certificates (the key we put on is derived from the peer's certificate).

The carrier itself drops, with one log line each, values that are not ours (another opendht user type on our
key) or too large, and silently skips a value it has already delivered (the DHT re-announces values). Values
stay on the DHT for ten minutes, and an acceptor started again would answer its last session's invites: as
in the original tool, a value's id says when it was put, and the accept side drops values put (by the sender's
clock) more than ``LINGER_SLACK`` seconds before it started listening. The id is not authenticated: it only
ever drops values. What stops a bystander who re-puts a value it read under a fresh id is the offer inside:
signed, naming its recipient and its time, and checked against the replay memory that survives restarts and
the rule that a peer's invite must be newer than its last one (``freshness``; docs/security.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from plexus.errors import ProfileError, RendezvousError
from plexus.profile.model import DhtRendezvous, Peer, Profile
from plexus.rendezvous.auth import MAX_DOCUMENT_BYTES, SmimeAuthenticator
from plexus.rendezvous.base import Document
from plexus.rendezvous.dht.identity import key_text, load_own, peer_certificate
from plexus.rendezvous.dht.node import VALUE_TYPE, DhtNode, Received
from plexus.rendezvous.exchange import OfferExchange, Trace
from plexus.rendezvous.smime import SmimeError, load_certificates

log = logging.getLogger("plexus.rendezvous")

PUT_WAIT = 0.5  # publish returns after this even when the put is not acknowledged yet
PUT_TIMEOUT = 5.0  # how long one put may go unacknowledged
PUBLISH_TIMEOUT = 20.0  # all attempts of one publish (the original tool waits 20 s too)
PUT_RETRY = 1.0  # pause between attempts after a failed put
REBOOTSTRAP_INTERVAL = 5.0  # ping the bootstrap nodes again (one packet each) so a restarted one learns of us
MAX_PENDING = 1024  # received values not yet read by the exchange
SEEN_CAPACITY = 4096
FIRST_CONTACT_RENEWALS = 2  # fresh nodes to try when no bootstrap node answers the first one
LINGER_SLACK = 10.0  # accept side: values put this long before we listened are an earlier session's


def value_id(now: float) -> int:
    """An opendht value id that tells when it was put: milliseconds since 1970 above 20 random bits."""
    return (int(now * 1000) << 20) | secrets.randbits(20)


def value_time(identifier: int) -> float:
    return (identifier >> 20) / 1000


def dht_settings(profile: Profile) -> DhtRendezvous:
    if profile.rendezvous.dht is None:
        raise ProfileError("rendezvous: no dht settings", hint="add rendezvous.dht")
    return profile.rendezvous.dht


class DhtCarrier:
    """Implements ``plexus.rendezvous.base.Carrier`` over an OpenDHT node of our own."""

    def __init__(self, profile: Profile, *, bind: str = "") -> None:
        settings = dht_settings(profile)
        self._own_key = key_text(load_own(profile).certificate, settings.app)
        self._accepting = profile.role == "accept"
        self._linger = min(LINGER_SLACK, profile.rendezvous.max_age)
        self.listening_since = 0.0
        self._peer_keys = {peer.id: key_text(peer_certificate(peer), settings.app) for peer in profile.peers}
        self._make_node = functools.partial(DhtNode, port=settings.port, network=settings.network,
                                            bootstrap=settings.bootstrap, bind=bind)
        self.node = self._make_node()
        self._node_ready = asyncio.Event()
        self._keep = max(profile.rendezvous.timeout, PUBLISH_TIMEOUT)  # how long our puts may still matter
        self._published: list[tuple[Peer, str, bytes, int]] = []  # (peer, key, data, value id): to re-put
        self._pending: asyncio.Queue[Received] = asyncio.Queue(MAX_PENDING)
        self._seen: OrderedDict[tuple[int, bytes], None] = OrderedDict()
        self._maintenance: asyncio.Task[None] | None = None
        self._puts: set[asyncio.Task[None]] = set()
        self._connected = False  # a bootstrap node answered us once

    async def __aenter__(self) -> DhtCarrier:
        await self.node.start()
        self.listening_since = time.time()
        self.node.listen(self._own_key, self._deliver)
        for key in self._peer_keys.values() if not self._accepting else ():
            self.node.warm(key)  # overlaps with STUN in `plexus up`: the invite's put then goes out at once
        self._node_ready.set()
        self._maintenance = asyncio.create_task(self._rebootstrap(), name="plexus-dht-rebootstrap")
        return self

    async def __aexit__(self, *exc: object) -> None:
        tasks = [*self._puts, *([self._maintenance] if self._maintenance else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.node.close()

    async def publish(self, peer: Peer, data: bytes, media_type: str) -> None:
        """Hand the document to our node and return as soon as it is stored, or after ``PUT_WAIT`` while the
        node is still at it (the answer may well arrive before the put is acknowledged); failures within that
        time raise, later ones are logged."""
        key = self._peer_keys.get(peer.id)
        if key is None:
            raise RendezvousError(f"peer {peer.id!r} is not in this profile")
        identifier = value_id(time.time())
        self._published = [entry for entry in self._published if value_time(entry[3]) > time.time() - self._keep]
        self._published.append((peer, key, data, identifier))
        task = self._start_put(peer, key, data, identifier)
        done, _ = await asyncio.wait({task}, timeout=PUT_WAIT)
        if not done and not await self._contact():  # no DHT node answers (yet): wait for the verdict
            done, _ = await asyncio.wait({task}, timeout=PUT_TIMEOUT + 1)
        if task in done:
            task.result()

    async def _contact(self) -> bool:
        """Whether a bootstrap node ever answered us (asked now until one has: later, pings to a node that
        restarted fail for a while although the DHT works)."""
        self._connected = self._connected or await self.node.any_reached(1.0)
        return self._connected

    def _start_put(self, peer: Peer, key: str, data: bytes, identifier: int) -> asyncio.Task[None]:
        task = asyncio.create_task(self._put_until_stored(peer, key, data, identifier))
        self._puts.add(task)
        task.add_done_callback(self._put_finished)
        return task

    async def _put_until_stored(self, peer: Peer, key: str, data: bytes, identifier: int) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_TIMEOUT
        attempts = 0
        while True:
            attempts += 1
            await self._node_ready.wait()
            node = self.node
            stored = await node.put(key, data, PUT_TIMEOUT, value_id=identifier)
            if stored or node is not self.node:  # stored, or our node was renewed meanwhile (the new one puts it)
                return
            if stored is None and not await self._contact():
                bootstrap = ", ".join(str(endpoint) for endpoint in self.node.bootstrap_nodes) or "none"
                raise RendezvousError(f"no DHT node took the offer for {peer.id!r}: no DHT node answered us "
                                      f"(bootstrap nodes: {bootstrap})", hint="are they up and reachable over UDP? "
                                      "(plexus doctor PROFILE)")
            if stored is None:
                log.info("dht: no acknowledgement of the offer for %r within %g s; the node keeps announcing it",
                         peer.id, PUT_TIMEOUT)
                return
            if loop.time() + PUT_RETRY >= deadline:
                raise RendezvousError(f"no DHT node took the offer for {peer.id!r} ({attempts} attempts in "
                                      f"{PUBLISH_TIMEOUT:g} s)", hint="are the rendezvous.dht.bootstrap nodes up? "
                                      "(plexus doctor PROFILE)")
            await asyncio.sleep(PUT_RETRY)

    def _put_finished(self, task: asyncio.Task[None]) -> None:
        self._puts.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("rendezvous: %s", task.exception())

    async def documents(self) -> AsyncIterator[Document]:
        while True:
            value = await self._pending.get()
            origin = f"dht value {value.value_id:016x}"
            if value.user_type != VALUE_TYPE:
                log.warning("rendezvous: dropped %s: foreign value (type %r, not %r)", origin,
                            value.user_type[:40], VALUE_TYPE)
                continue
            if len(value.data) > MAX_DOCUMENT_BYTES:
                log.warning("rendezvous: dropped %s: %d bytes, more than %d", origin, len(value.data),
                            MAX_DOCUMENT_BYTES)
                continue
            put_at = value_time(value.value_id)
            if self._accepting and put_at < self.listening_since - self._linger:
                log.warning("rendezvous: dropped %s: put %.0f s before we started listening (an earlier "
                            "session's)", origin, self.listening_since - put_at)
                continue
            if self._first_sight(value):
                yield Document(value.data, origin)

    def expect_reply(self, within: float) -> None:
        """Nothing to do: a DHT listen is push already."""

    def _deliver(self, value: Received) -> None:
        try:
            self._pending.put_nowait(value)
        except asyncio.QueueFull:
            log.warning("rendezvous: dropped dht value %016x: %d values already wait", value.value_id, MAX_PENDING)

    def _first_sight(self, value: Received) -> bool:
        """False for a value we delivered before (same id, same bytes: the DHT announcing it again)."""
        seen = (value.value_id, hashlib.sha256(value.data).digest())
        if seen in self._seen:
            return False
        self._seen[seen] = None
        if len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        return True

    async def _renew_node(self, why: str) -> None:
        """Replace our node by a fresh one (new id, port and tables), listening on our key and putting again
        what we published lately."""
        log.info("rendezvous: %s; starting our node afresh", why)
        old, self.node = self.node, self._make_node()
        self._node_ready.clear()
        try:
            await old.close()
            await self.node.start()
            self.node.listen(self._own_key, self._deliver)
        finally:
            self._node_ready.set()
        for peer, key, data, identifier in self._published:
            if value_time(identifier) > time.time() - self._keep:
                self._start_put(peer, key, data, identifier)

    async def _rebootstrap(self) -> None:
        """Ping the bootstrap nodes every few seconds (one packet each), so that a restarted one learns of us
        again. At start, when none answers within 4 s, start our node afresh on another port (at most
        ``FIRST_CONTACT_RENEWALS`` times): in the lab a node's first contact sometimes never succeeds, while a
        new node's does."""
        for renewal in range(FIRST_CONTACT_RENEWALS + 1):
            self._connected = self._connected or await self.node.any_reached(4.0)
            if self._connected or renewal == FIRST_CONTACT_RENEWALS:
                break
            await self._renew_node("no DHT bootstrap node answered within 4 s")
        while True:
            await asyncio.sleep(REBOOTSTRAP_INTERVAL)
            await self._node_ready.wait()
            self.node.rebootstrap()


def open_dht_exchange(profile: Profile, *, trace: Trace | None = None, bind: str = "") -> OfferExchange:
    """The exchange for a profile with ``rendezvous.dht``: S/MIME-sealed offers over a DHT carrier. Use it as
    ``async with open_dht_exchange(profile) as exchange``."""
    auth = profile.rendezvous.authentication
    if auth.method != "smime":
        raise ProfileError(f"rendezvous: the DHT needs authentication: smime, not {auth.method}",
                           hint="anyone can read and write DHT values; S/MIME signs and encrypts them "
                                "(plexus keygen PROFILE creates the identity)")
    try:
        authorities = load_certificates(auth.ca) if auth.ca else []
    except SmimeError as error:
        raise ProfileError(f"rendezvous: {error}") from error
    carrier = DhtCarrier(profile, bind=bind)  # checks every peer's certificate first
    authenticator = SmimeAuthenticator(load_own(profile), profile.peers, authorities)
    return OfferExchange(profile, carrier, authenticator, trace=trace)


if TYPE_CHECKING:  # mypy checks that DhtCarrier is a Carrier
    from plexus.rendezvous.base import Carrier

    def _conforms(carrier: DhtCarrier) -> Carrier:
        return carrier
