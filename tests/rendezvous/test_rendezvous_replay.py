"""Replay safety that survives restarts and late delivery (``plexus.rendezvous.freshness``), and per-peer
pre-shared keys (a PSK peer cannot pose as another). Pure logic over the in-memory carrier of
test_rendezvous_exchange; the mail and DHT versions against real servers are in test_replay_lab.py and
test_dht_lab.py."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest
from support.carriers import LOCAL, Board, exchange, serve
from support.rendezvous import make_profile

from plexus.profile.model import Peer, Profile, SecretRef
from plexus.rendezvous.auth import PskAuthenticator
from plexus.rendezvous.base import Document
from plexus.rendezvous.freshness import Freshness, replay_file
from plexus.rendezvous.offer import Offer
from plexus.state import state_dir


def invite(sender: str = "alice", at: float | None = None) -> Offer:
    return Offer("invite", sender, "bob", Offer.new_nonce(), time.time() if at is None else at,
                 ("198.18.11.2", 40001), "endpoint-independent", bytes(range(1, 33)))


def test_a_replay_is_refused_by_the_next_process_too(tmp_path: Path) -> None:
    store = tmp_path / "state" / "replay-bob.json"
    first = invite()
    assert Freshness(120, 120, store=store).check(first) is None
    assert stat.S_IMODE(store.stat().st_mode) == 0o600 and stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    restarted = Freshness(120, 120, store=store)  # a new acceptor process
    assert restarted.check(first) == "replayed (nonce seen before)"
    assert Freshness(120, 120).check(first) is None  # without the file it would have been taken again


def test_an_invite_not_newer_than_the_last_one_taken_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "replay-bob.json"
    now = time.time()
    withheld, later = invite(at=now - 20), invite(at=now - 5)
    memory = Freshness(120, 120, store=store)
    assert memory.check(later) is None
    reason = memory.check(withheld)  # delivered late by the mailbox operator: never replaces the newer session
    assert reason is not None and "not newer than the last invite taken from 'alice'" in reason
    assert Freshness(120, 120, store=store).check(invite(at=now - 10)) is not None  # after a restart too
    assert Freshness(120, 120, store=store).check(invite(sender="carol", at=now - 10)) is None  # per peer
    assert Freshness(120, 120, store=store).check(invite(at=now)) is None


def test_the_replay_file_stays_small_and_a_broken_one_is_survivable(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "replay-bob.json"
    clock = [1_000_000.0]
    memory = Freshness(120, 10, store=store, clock=lambda: clock[0])
    for step in range(50):
        clock[0] += 1
        assert memory.check(invite(at=clock[0])) is None
        assert step < 12 or len(memory._seen) <= 12  # only nonces inside the skew window are kept
    assert store.stat().st_size < 2000
    store.write_text("{not json")
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    assert Freshness(120, 10, store=store).check(invite()) is None
    assert "replay memory" in caplog.text and "unusable" in caplog.text


def test_an_unwritable_state_folder_warns_once_and_keeps_working(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    memory = Freshness(120, 120, store=blocker / "replay-bob.json")
    first = invite()
    assert memory.check(first) is None and memory.check(invite()) is None
    assert memory.check(first) == "replayed (nonce seen before)"
    assert caplog.text.count("cannot write the replay memory") == 1


async def test_a_replayed_invite_after_an_acceptor_restart_starts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """The exchange uses the state folder (PLEXUS_STATE_DIR, per test): a second acceptor process drops the
    invite the first one took."""
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    board = Board()
    bob_profile = make_profile("bob", [("alice", None)])
    async with exchange(board, make_profile("alice", [("bob", None)], role="initiate")) as alice:
        async with exchange(board, bob_profile) as bob:
            server = asyncio.create_task(serve(bob))
            await alice.invite(alice.profile.peers[0], LOCAL)
            server.cancel()
        captured = next(data for to, data in board.sent if to == "bob")
        assert replay_file(state_dir(), "bob").exists()
        async with exchange(board, bob_profile) as restarted:
            board.box("bob").put_nowait(Document(captured, "replayed mail"))
            invites = restarted.invites()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(aiter(invites)), 0.5)
    assert "dropped replayed mail: invite from 'alice': replayed (nonce seen before)" in caplog.text


def psk_profile(name: str, peers: dict[str, str | None], shared: str | None = None, role: str = "accept") -> Profile:
    profile = make_profile(name, [(peer, None) for peer in peers], role=role, psk=shared or "unused shared key!")
    assert isinstance(profile, Profile)
    auth = replace(profile.rendezvous.authentication, psk=SecretRef("inline", shared) if shared else None)
    return replace(profile, rendezvous=replace(profile.rendezvous, authentication=auth),
                   peers=tuple(replace(peer, psk=SecretRef("inline", key) if (key := peers[peer.id]) else None)
                               for peer in profile.peers))


async def test_a_psk_peer_cannot_pose_as_another(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "plexus.rendezvous")
    board = Board()
    bob = psk_profile("bob", {"alice": "alice and bob's own key", "carol": "carol and bob's own key"})
    alice = psk_profile("alice", {"bob": "alice and bob's own key"}, role="initiate")
    carol_as_alice = psk_profile("alice", {"bob": "carol and bob's own key"}, role="initiate")
    async with exchange(board, bob) as acceptor, exchange(board, carol_as_alice) as forger:
        attempt = asyncio.create_task(forger.invite(forger.profile.peers[0], LOCAL))
        invites = acceptor.invites()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(aiter(invites)), 0.5)
        attempt.cancel()
    assert "invite claims to be from 'alice' but is not signed by its certificate" not in caplog.text
    assert "invite claims to be from 'alice' but is not authenticated with its key" in caplog.text
    async with exchange(board, bob) as acceptor, exchange(board, alice) as genuine:
        server = asyncio.create_task(serve(acceptor))
        agreement = await asyncio.wait_for(genuine.invite(genuine.profile.peers[0], LOCAL), 5)
        server.cancel()
    assert agreement.peer.id == "bob"


def test_the_profile_key_serves_peers_without_their_own() -> None:
    authenticator = PskAuthenticator("the profile's shared key", peers={"alice": "alice's very own key"})
    sealed_for_carol = PskAuthenticator("the profile's shared key").seal(b"{}", Peer("bob"))
    opened = authenticator.open(sealed_for_carol)
    assert authenticator.vouch(opened, Peer("carol")) and not authenticator.vouch(opened, Peer("alice"))
    alice_doc = PskAuthenticator(peers={"bob": "alice's very own key"}).seal(b"{}", Peer("bob"))
    assert authenticator.vouch(authenticator.open(alice_doc), Peer("alice"))
    assert os.environ["PLEXUS_STATE_DIR"]  # conftest gives each test its own state folder
