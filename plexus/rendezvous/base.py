"""What the pipeline needs from a rendezvous, whatever carries the offers (a mailbox, a DHT).

The initiator calls ``invite`` and gets an ``Agreement`` (or ``PeerRefused``); the acceptor iterates
``invites()`` and calls ``answer`` (or ``refuse``) for each, concurrently. Offers are authenticated, checked for
staleness and replay, and the session secret is derived from an ephemeral X25519 exchange and both nonces, all
inside the rendezvous; the caller only sees verified results.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from plexus.errors import RendezvousError
from plexus.profile.model import Peer, Role

if TYPE_CHECKING:
    from plexus.nat.mapping import Mapping


@dataclass(frozen=True)
class LocalOffer:
    """Our side of an offer, as the pipeline knows it before the exchange."""

    endpoint: tuple[str, int]  # our outer (public) endpoint, from STUN
    nat: Mapping  # our mapping behaviour, e.g. "endpoint-independent"
    exports: dict[str, str] = field(default_factory=dict)  # public values of our payload (e.g. a WG public key)
    filtering: str | None = None  # our NAT's filtering behaviour, if measured
    relay: tuple[str, int] | None = None  # our TURN relayed address, if we allocated one
    path: str | None = None  # invite: "relayed" (required) or "direct" (never relay); accept: the path chosen


@dataclass(frozen=True)
class Agreement:
    """A completed exchange: everything the punch and the payload need about the peer, and the secret."""

    peer: Peer
    role: Role  # our role
    peer_endpoint: tuple[str, int]
    peer_nat: str
    peer_exports: dict[str, str]
    secret: bytes  # 32 bytes; only the two peers can derive it
    session_id: bytes  # 8 bytes, the same on both sides, distinct per session
    peer_filtering: str | None = None
    peer_relay: tuple[str, int] | None = None  # the peer's relayed address: send there
    peer_path: str | None = None  # the path the peer asked for (invite) or chose (accept)

    def __repr__(self) -> str:  # never show the secret
        return (f"Agreement(peer={self.peer.id!r}, role={self.role!r}, peer_endpoint={self.peer_endpoint}, "
                f"peer_nat={self.peer_nat!r}, session_id={self.session_id.hex()})")


@dataclass(frozen=True)
class Invite:
    """A verified invitation from one of our configured peers, not yet answered."""

    peer: Peer
    endpoint: tuple[str, int]
    nat: str
    refusal: str | None = None  # the peer says it cannot punch (e.g. symmetric NAT); do not answer
    exports: dict[str, str] = field(default_factory=dict)  # the peer's payload values
    nonce: bytes = field(default=b"", repr=False)  # the invite's nonce (the answer refers to it)
    key: bytes = field(default=b"", repr=False)  # the peer's ephemeral X25519 public key
    filtering: str | None = None
    relay: tuple[str, int] | None = None  # the peer's relayed address
    path: str | None = None  # "relayed": the peer needs the relay; "direct": it never relays


class PeerRefused(RendezvousError):
    """The peer answered that it cannot connect (e.g. its NAT is symmetric)."""


@dataclass(frozen=True)
class Document:
    """One raw document a carrier received for us (not yet authenticated)."""

    data: bytes
    origin: str  # where it came from, for log lines (e.g. "mail uid 17")


class Carrier(Protocol):
    """What moves documents: publish bytes to a peer, and receive the documents addressed to us. Knows nothing
    of offers or authentication (an ``OfferExchange`` adds those), so a DHT carrier can replace the mailbox."""

    async def __aenter__(self) -> Carrier: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def publish(self, peer: Peer, data: bytes, media_type: str) -> None:
        """Deliver one document to the peer; RendezvousError when it cannot."""
        ...

    def documents(self) -> AsyncIterator[Document]:
        """Documents addressed to us, oldest first, each once (runs until cancelled; reconnects inside)."""
        ...

    def expect_reply(self, within: float) -> None:
        """A hint: an answer should arrive within ``within`` seconds, so look for it eagerly until then."""
        ...


class Exchange(Protocol):
    """One rendezvous transport with authentication, as the pipeline uses it. An async context manager:
    connections are opened on enter and closed on exit (and on cancellation)."""

    async def __aenter__(self) -> Exchange: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def invite(self, peer: Peer, local: LocalOffer) -> Agreement:
        """Send an invite, wait (profile's rendezvous.timeout) for the peer's accept. PeerRefused if it refuses,
        RendezvousError on timeout."""
        ...

    async def notify_refusal(self, peer: Peer, reason: str) -> None:
        """Tell a peer we cannot connect (sent instead of an invite), so its log says why."""
        ...

    def invites(self) -> AsyncIterator[Invite]:
        """Verified invites addressed to us from configured peers, as they arrive (runs until cancelled)."""
        ...

    async def answer(self, invite: Invite, local: LocalOffer) -> Agreement:
        """Send our accept for an invite and return the agreement."""
        ...

    async def refuse(self, invite: Invite, reason: str) -> None:
        """Answer an invite with a refusal (the initiator then stops waiting)."""
        ...
