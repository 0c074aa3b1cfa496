"""An in-memory carrier (a board of documents by recipient) for exchange and pipeline tests without a server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from plexus.profile.model import Peer, Profile
from plexus.rendezvous.base import Document, LocalOffer
from plexus.rendezvous.exchange import OfferExchange

LOCAL = LocalOffer(("198.18.11.2", 40001), "endpoint-independent", {"fingerprint": "AA"})


class Board:
    """Documents by recipient id; remembers every delivered document (to replay them)."""

    def __init__(self) -> None:
        self.boxes: dict[str, asyncio.Queue[Document]] = {}
        self.sent: list[tuple[str, bytes]] = []

    def box(self, host: str) -> asyncio.Queue[Document]:
        return self.boxes.setdefault(host, asyncio.Queue())


class FakeCarrier:
    def __init__(self, board: Board, host: str) -> None:
        self.board, self.host, self.hints = board, host, 0

    async def __aenter__(self) -> FakeCarrier:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def publish(self, peer: Peer, data: bytes, media_type: str) -> None:
        self.board.sent.append((peer.id, data))
        self.board.box(peer.id).put_nowait(Document(data, f"test document from {self.host}"))

    async def documents(self) -> AsyncIterator[Document]:
        while True:
            yield await self.board.box(self.host).get()

    def expect_reply(self, within: float) -> None:
        self.hints += 1


def exchange(board: Board, profile: object) -> OfferExchange:
    assert isinstance(profile, Profile)
    return OfferExchange(profile, FakeCarrier(board, profile.host.id))


async def serve(acceptor: OfferExchange, refuse: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    tasks = set()
    async for invite in acceptor.invites():
        if invite.peer.id in refuse:
            await acceptor.refuse(invite, "my NAT is symmetric")
        else:
            tasks.add(asyncio.create_task(acceptor.answer(invite, LOCAL)))
