"""OfferExchange over an in-memory carrier (pure logic; the mailbox tests are in test_rendezvous_mail.py):
roles, secrets, refusals, replay/stale/misaddressed/unknown drops, timeouts, many peers at once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from support.carriers import LOCAL, Board, FakeCarrier, exchange, serve
from support.rendezvous import make_profile

from plexus.errors import RendezvousError
from plexus.profile.model import Peer, Profile
from plexus.rendezvous.base import Document, LocalOffer, PeerRefused
from plexus.rendezvous.exchange import OfferExchange
from plexus.rendezvous.offer import Offer


async def test_invite_and_answer_agree_on_the_secret() -> None:
    board = Board()
    bob_profile = make_profile("bob", [("alice", None)])
    async with exchange(board, make_profile("alice", [("bob", None)], role="initiate")) as alice, \
            exchange(board, bob_profile) as bob:
        invite_task = asyncio.create_task(alice.invite(alice.profile.peers[0], LOCAL))
        invite = await anext(aiter(bob.invites()))
        assert invite.peer.id == "alice" and invite.endpoint == LOCAL.endpoint and invite.exports == LOCAL.exports
        theirs = await bob.answer(invite, LocalOffer(("198.18.12.2", 40002), "endpoint-independent"))
        ours = await asyncio.wait_for(invite_task, 5)
    assert ours.secret == theirs.secret and ours.session_id == theirs.session_id
    assert ours.peer_endpoint == ("198.18.12.2", 40002) and theirs.peer_endpoint == LOCAL.endpoint
    assert ours.role == "initiate" and theirs.role == "accept"
    assert ours.secret.hex() not in repr(ours)
    assert alice.carrier.hints == 1  # type: ignore[attr-defined]


async def test_refusals_both_ways() -> None:
    board = Board()
    async with exchange(board, make_profile("alice", [("bob", None)], role="initiate")) as alice, \
            exchange(board, make_profile("bob", [("alice", None)])) as bob:
        server = asyncio.create_task(serve(bob, refuse={"alice"}))
        with pytest.raises(PeerRefused, match="symmetric"):
            await alice.invite(alice.profile.peers[0], LOCAL)
        server.cancel()
        await alice.notify_refusal(alice.profile.peers[0], "symmetric NAT here")
        invite = await anext(aiter(bob.invites()))
        assert invite.refusal == "symmetric NAT here"


async def test_timeout_names_peer_and_time() -> None:
    board = Board()
    async with exchange(board, make_profile("alice", [("bob", None)], role="initiate", timeout=0.3)) as alice:
        started = time.monotonic()
        with pytest.raises(RendezvousError, match=r"'bob' did not answer within 0.3 s"):
            await alice.invite(alice.profile.peers[0], LOCAL)
        assert time.monotonic() - started < 2


async def test_bad_documents_are_dropped_with_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    board = Board()
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    mallory = make_profile("mallory", [("bob", None)], psk="mallory's own long key!")
    carol = make_profile("carol", [("bob", None)])  # knows the PSK but is not among bob's peers
    eve_as_dave = make_profile("alice", [("dave", None)])  # addresses dave, lands in bob's box
    async with exchange(board, make_profile("bob", [("alice", None)], skew=60)) as bob, \
            exchange(board, make_profile("alice", [("bob", None)], role="initiate")) as alice:
        sender = alice.carrier
        invite = asyncio.create_task(alice.invite(alice.profile.peers[0], LOCAL))
        received = await anext(aiter(bob.invites()))
        assert received.peer.id == "alice"
        genuine = board.sent[-1][1]
        bob_box = board.box("bob")
        cases = {
            "replayed": genuine,
            "HMAC does not verify": exchange(board, mallory).authenticator.seal(b"{}", Peer("bob")),
            "not a JSON document": b"\x00garbage\xff",
            "not JSON": alice.authenticator.seal(b"{not json", Peer("bob")),
            "unknown sender 'carol'": _sealed(alice, carol, "bob"),
            "addressed to 'dave'": _sealed(alice, eve_as_dave, "dave"),
            "in the future": _sealed(alice, alice.profile, "bob", age=-3600),
            "stale": _sealed(alice, alice.profile, "bob", age=3600),
            "answers no invite": _sealed(alice, alice.profile, "bob", kind="accept"),
            "larger than": b"{" + b" " * 200000 + b"}",
        }
        for data in cases.values():
            bob_box.put_nowait(Document(data, "test"))
        await asyncio.sleep(0.1)
        lines = [record.getMessage() for record in caplog.records if record.name == "plexus.rendezvous"]
        for expected in cases:
            assert sum(expected in line for line in lines) == 1, (expected, lines)
        assert bob._invites.empty()
        invite.cancel()
        del sender


def _sealed(via: OfferExchange, profile: object, to: str, *, age: float = 0, kind: str = "invite") -> bytes:
    assert isinstance(profile, Profile)
    offer = Offer(kind, profile.host.id, to, Offer.new_nonce(), time.time() - age,  # type: ignore[arg-type]
                  ("198.18.0.1", 1), "endpoint-independent", b"\x09" * 32,
                  reply_to=Offer.new_nonce() if kind == "accept" else None)
    return via.authenticator.seal(offer.encode(), Peer(to))


async def test_offer_older_than_max_age_at_wait_start_is_stale(caplog: pytest.LogCaptureFixture) -> None:
    board = Board()
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    async with exchange(board, make_profile("alice", [("bob", None)], role="initiate")) as alice:
        old, recent = _sealed(alice, alice.profile, "bob", age=50), _sealed(alice, alice.profile, "bob", age=5)
    async with exchange(board, make_profile("bob", [("alice", None)], max_age=30, skew=300)) as bob:
        board.box("bob").put_nowait(Document(old, "old"))
        board.box("bob").put_nowait(Document(recent, "recent"))
        invite = await asyncio.wait_for(anext(aiter(bob.invites())), 2)
        assert invite.peer.id == "alice"
        assert bob._invites.empty()
    assert any("older than 30 s when the wait started" in record.getMessage() for record in caplog.records)


async def test_acceptor_serves_many_peers_while_one_is_slow() -> None:
    board = Board()
    names = [f"laptop{i}" for i in range(5)]
    bob = exchange(board, make_profile("bob", [(name, None) for name in names]))
    initiators = [exchange(board, make_profile(name, [("bob", None)], role="initiate")) for name in names]
    slow_started = asyncio.Event()

    async def handle(invite: object) -> None:
        from plexus.rendezvous.base import Invite

        assert isinstance(invite, Invite)
        if invite.peer.id == "laptop0":  # e.g. a STUN query that hangs: must not hold up the others
            slow_started.set()
            await asyncio.sleep(3600)
        await bob.answer(invite, LOCAL)

    handlers = set()

    async def accept_loop() -> None:
        async for invite in bob.invites():
            handlers.add(asyncio.create_task(handle(invite)))

    async with bob:
        for initiator in initiators:
            await initiator.__aenter__()
        server = asyncio.create_task(accept_loop())
        stuck = asyncio.create_task(initiators[0].invite(initiators[0].profile.peers[0], LOCAL))
        await asyncio.wait_for(slow_started.wait(), 5)
        results = await asyncio.gather(*(initiator.invite(initiator.profile.peers[0], LOCAL)
                                         for initiator in initiators[1:]))
        assert not stuck.done() and len({result.secret for result in results}) == 4
        server.cancel()
        stuck.cancel()
        for handler in handlers:
            handler.cancel()
        for initiator in initiators:
            await initiator.__aexit__(None, None, None)


async def test_carrier_failure_reaches_waiters() -> None:
    class Failing(FakeCarrier):
        async def documents(self) -> AsyncIterator[Document]:
            await asyncio.sleep(0.05)
            raise RendezvousError("mailbox unreachable for 600 s")
            yield  # pragma: no cover

    profile = make_profile("alice", [("bob", None)], role="initiate")
    assert isinstance(profile, Profile)
    async with OfferExchange(replace(profile), Failing(Board(), "alice")) as alice:
        with pytest.raises(RendezvousError, match="unreachable"):
            await alice.invite(profile.peers[0], LOCAL)
        with pytest.raises(RendezvousError, match="unreachable"):
            await anext(aiter(alice.invites()))
