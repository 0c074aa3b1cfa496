"""The DHT rendezvous with real OpenDHT nodes on loopback: a bootstrap node and one node per exchange, all in
this process, talking UDP on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.dht import LOOPBACK, Recorder, free_udp_port, identity, profile

from plexus.doctor.dht import check_dht
from plexus.errors import RendezvousError
from plexus.profile.model import Endpoint, Profile
from plexus.rendezvous.auth import SmimeAuthenticator
from plexus.rendezvous.base import Agreement, LocalOffer
from plexus.rendezvous.dht import DhtCarrier, open_dht_exchange, value_id
from plexus.rendezvous.dht.identity import key_text, load_own
from plexus.rendezvous.dht.node import DhtNode, Received
from plexus.rendezvous.exchange import OfferExchange
from plexus.rendezvous.offer import Offer


@pytest.fixture
async def bootstrap() -> AsyncIterator[Endpoint]:
    port = free_udp_port()
    async with DhtNode(port=port, bind=LOOPBACK, bootstrap_mode=True):
        yield Endpoint(LOOPBACK, port)


def offer_of(side: str) -> LocalOffer:
    return LocalOffer(endpoint=("198.18.1.2" if side == "a" else "198.18.2.2", 40000), nat="endpoint-independent",
                      exports={"fingerprint": side * 8})


async def serve(exchange: OfferExchange, answered: list[Agreement], tasks: set[asyncio.Task[None]]) -> None:
    """The acceptor's loop: answer every invite concurrently, as ``plexus up`` does."""

    async def answer(invite: object) -> None:
        answered.append(await exchange.answer(invite, offer_of("b")))  # type: ignore[arg-type]

    async for invite in exchange.invites():
        tasks.add(asyncio.create_task(answer(invite)))


@contextlib.asynccontextmanager
async def acceptor(bob: Profile, answered: list[Agreement],
                   trace: Recorder | None = None) -> AsyncIterator[OfferExchange]:
    """Bob answering invites; on leaving, the answers under way finish first (``answer`` returns once its
    put is handed to the node, which may be after the initiator already has the answer)."""
    async with open_dht_exchange(bob, bind=LOOPBACK, trace=trace) as exchange:
        tasks: set[asyncio.Task[None]] = set()
        server = asyncio.create_task(serve(exchange, answered, tasks))
        try:
            yield exchange
        finally:
            if tasks:
                await asyncio.wait(tasks, timeout=10)
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server


async def test_invite_and_answer_over_the_dht_agree(tmp_path: Path, bootstrap: Endpoint) -> None:
    alice = profile(tmp_path, "alice", ["bob"], [bootstrap], role="initiate")
    bob = profile(tmp_path, "bob", ["alice"], [bootstrap])
    answered: list[Agreement] = []
    async with acceptor(bob, answered), open_dht_exchange(alice, bind=LOOPBACK) as exchange:
        started = time.monotonic()
        agreement = await exchange.invite(alice.peers[0], offer_of("a"))
        elapsed = time.monotonic() - started
    assert len(answered) == 1
    theirs = answered[0]
    assert agreement.secret == theirs.secret and len(agreement.secret) == 32
    assert agreement.session_id == theirs.session_id
    assert agreement.peer_endpoint == ("198.18.2.2", 40000) and theirs.peer_endpoint == ("198.18.1.2", 40000)
    assert agreement.peer_exports == {"fingerprint": "b" * 8} and theirs.peer_exports == {"fingerprint": "a" * 8}
    assert (agreement.role, theirs.role) == ("initiate", "accept")
    assert elapsed < 5, f"the exchange took {elapsed:.2f} s on loopback"


async def test_identity_from_the_dht_key_directory(tmp_path: Path, bootstrap: Endpoint) -> None:
    """A profile without rendezvous.smime files uses <dht.keys>/identity.crt and .key (what keygen writes)."""
    alice = profile(tmp_path, "alice", ["bob"], [bootstrap], role="initiate", keys_only=True)
    bob = profile(tmp_path, "bob", ["alice"], [bootstrap], keys_only=True)
    answered: list[Agreement] = []
    async with acceptor(bob, answered), open_dht_exchange(alice, bind=LOOPBACK) as exchange:
        agreement = await exchange.invite(alice.peers[0], offer_of("a"))
    assert answered and agreement.secret == answered[0].secret


async def test_acceptor_answers_many_peers_at_once(tmp_path: Path, bootstrap: Endpoint) -> None:
    names = ["alice", "carol", "dave", "erin", "frank"]
    bob = profile(tmp_path, "bob", names, [bootstrap])
    answered: list[Agreement] = []
    async with acceptor(bob, answered):
        async def initiate(name: str) -> Agreement:
            mine = profile(tmp_path, name, ["bob"], [bootstrap], role="initiate")
            async with open_dht_exchange(mine, bind=LOOPBACK) as exchange:
                return await exchange.invite(mine.peers[0], offer_of("a"))

        agreements = await asyncio.wait_for(asyncio.gather(*(initiate(name) for name in names)), 30)
    assert sorted(a.peer.id for a in answered) == sorted(names)
    by_peer = {a.peer.id: a for a in answered}
    for name, agreement in zip(names, agreements, strict=True):
        assert agreement.secret == by_peer[name].secret
    assert len({a.secret for a in agreements}) == len(names)


async def test_forged_replayed_stale_foreign_and_garbage_values_are_dropped(
        tmp_path: Path, bootstrap: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    alice = profile(tmp_path, "alice", ["bob"], [bootstrap], role="initiate")
    bob = profile(tmp_path, "bob", ["alice"], [bootstrap])
    mallory = profile(tmp_path, "mallory", ["bob"], [bootstrap], role="initiate")
    bob_key = key_text(load_own(bob).certificate, bob.rendezvous.dht.app)  # type: ignore[union-attr]
    as_alice = SmimeAuthenticator(load_own(alice), alice.peers, [])
    as_mallory = SmimeAuthenticator(load_own(mallory), mallory.peers, [])
    bob_peer = alice.peers[0]

    def invite(sender: str, at: float) -> bytes:
        return Offer(kind="invite", sender=sender, recipient="bob", nonce=Offer.new_nonce(), time=at,
                     endpoint=("198.18.9.9", 9), nat="endpoint-independent", key=b"\x09" * 32).encode()

    answered: list[Agreement] = []
    trace = Recorder()
    async with acceptor(bob, answered, trace), DhtNode(bootstrap=[bootstrap], bind=LOOPBACK) as raw:
        seen: list[Received] = []
        raw.listen(bob_key, seen.append)  # records alice's real invite as it passes, to replay it
        async with open_dht_exchange(alice, bind=LOOPBACK) as exchange:
            agreement = await exchange.invite(alice.peers[0], offer_of("a"))
        assert answered and agreement.secret == answered[0].secret
        genuine = [value for value in seen if value.user_type == "plexus/1"]
        assert len(genuine) == 1

        drops = {
            "replayed": genuine[0].data,  # the same sealed invite, put again as a new value
            "not signed by its certificate": as_mallory.seal(invite("alice", time.time()), bob_peer),
            "unknown sender 'mallory'": as_mallory.seal(invite("mallory", time.time()), bob_peer),
            "stale": as_alice.seal(invite("alice", time.time() - 3600), bob_peer),
            "cannot decrypt": b"\x30\x03garbage that is not CMS",
        }
        for data in drops.values():  # value ids as plexus makes them (else the acceptor drops them as old)
            # 15 s: alice's node just left, and a lookup still waits for it a while before the put is acknowledged
            assert await raw.put(bob_key, data, 15, value_id=value_id(time.time()))
        assert await raw.put(bob_key, b"someone else's data", 5, user_type="text/plain",
                             value_id=value_id(time.time()))
        expected = [*drops, "foreign value"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "plexus.rendezvous"]
            if all(any(word in line for line in lines) for word in expected):
                break
            await asyncio.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "plexus.rendezvous"]
    for word in expected:
        assert sum(word in line for line in lines) == 1, f"no single drop line with {word!r} in {lines}"
    assert len(answered) == 1, "a dropped value must never be answered"
    assert [o.kind for o in trace.received] == ["invite"]


async def test_bootstrap_node_restarted_while_the_acceptor_waits(tmp_path: Path) -> None:
    port = free_udp_port()
    bootstrap = Endpoint(LOOPBACK, port)
    alice = profile(tmp_path, "alice", ["bob"], [bootstrap], role="initiate")
    bob = profile(tmp_path, "bob", ["alice"], [bootstrap])
    answered: list[Agreement] = []
    first = DhtNode(port=port, bind=LOOPBACK, bootstrap_mode=True)
    await first.start()
    async with acceptor(bob, answered):
        await asyncio.sleep(0.5)
        await first.close()  # the bootstrap node goes away while bob waits ...
        await asyncio.sleep(1.0)
        async with DhtNode(port=port, bind=LOOPBACK, bootstrap_mode=True), \
                open_dht_exchange(alice, bind=LOOPBACK) as exchange:  # ... and comes back, empty
            agreement = await exchange.invite(alice.peers[0], offer_of("a"))
    assert answered and agreement.secret == answered[0].secret


async def test_publish_without_any_dht_node_fails_with_one_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import plexus.rendezvous.dht.carrier as dht

    monkeypatch.setattr(dht, "PUT_TIMEOUT", 1.0)
    dead = Endpoint(LOOPBACK, free_udp_port())
    alice = profile(tmp_path, "alice", ["bob"], [dead], role="initiate")
    carrier = DhtCarrier(alice, bind=LOOPBACK)
    async with carrier:
        started = time.monotonic()
        with pytest.raises(RendezvousError, match="no DHT node took the offer for 'bob'"):
            await carrier.publish(alice.peers[0], b"x", "application/octet-stream")
        assert time.monotonic() - started < 5


async def test_doctor_check_reaches_the_bootstrap_node(tmp_path: Path, bootstrap: Endpoint) -> None:
    bob = profile(tmp_path, "bob", ["alice"], [bootstrap])
    checks = await check_dht(bob)
    assert [(c.name, c.status) for c in checks] == [
        ("DHT identity", "ok"), ("DHT node", "ok"), (f"DHT bootstrap {bootstrap}", "ok")]
    dead = Endpoint(LOOPBACK, free_udp_port())
    lonely = profile(tmp_path / "other", "bob", ["alice"], [dead])
    identity(tmp_path / "other", "alice")
    checks = await check_dht(lonely, timeout=1.0)
    assert checks[-1].name == f"DHT bootstrap {dead}" and checks[-1].status == "fail"
    assert "no answer" in checks[-1].detail and checks[-1].fix
