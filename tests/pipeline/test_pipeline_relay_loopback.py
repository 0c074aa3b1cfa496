"""The relayed pipeline in one event loop, without root: two ``plexus.up()`` calls on loopback as in
test_pipeline_loopback.py (coturn STUN, an in-memory carrier, psk-authenticated offers, the ``exec`` template),
with one side's relay policy ``always`` on a real TURN server (the ``turn_server`` fixture, long-term
credentials). Both mappings are "none" on loopback: the policy alone forces the relay. Each side's payload then
exchanges a datagram with the other through the relay (the allocating side through its bridge), and the
allocation is gone once the sessions end. Wrong relay credentials fail before any invite or payload."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from support import turn
from support.carriers import Board, FakeCarrier
from support.turn import TurnServers

import plexus
from plexus.errors import RelayError
from plexus.profile.model import (
    Authentication,
    Endpoint,
    Host,
    Payload,
    Peer,
    Profile,
    Punch,
    Relay,
    Rendezvous,
    Role,
    SecretRef,
    Stun,
    TurnServer,
)
from plexus.rendezvous.base import PeerRefused

KEY = "alice and bob's relay key"
NO_RELAY = Relay()
# The exec template's positional call: COMMAND innerip innerport outerip outerport peerip peerport secretfile.
# Send a hello to the peer every 50 ms until the peer's hello is in, then a little longer so the peer hears ours.
EXCHANGER = """#!{python}
import json, os, socket, sys, time
inner, peer = (sys.argv[1], int(sys.argv[2])), (sys.argv[5], int(sys.argv[6]))
with open(sys.argv[7]) as secret:
    record = {{"argv": sys.argv[1:7], "secret": secret.read().strip(), "heard": None}}
hello = ("hello from " + sys.argv[2]).encode()
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(inner)
sock.settimeout(0.05)
until = time.monotonic() + 10
while time.monotonic() < until:
    sock.sendto(hello, peer)
    try:
        data, sender = sock.recvfrom(2048)
    except OSError:
        continue
    if record["heard"] is None and data.startswith(b"hello from "):
        record["heard"] = [data.decode(), list(sender)]
        until = time.monotonic() + 0.5
with open(os.path.join(os.environ["PLEXUS_TEST_OUT"], sys.argv[2] + ".json"), "w") as out:
    json.dump(record, out)
"""


@pytest.fixture
def exchanger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A payload that says hello to its peer, listens for the peer's, and writes what it was called with and
    what it heard to PLEXUS_TEST_OUT/<inner port>.json."""
    script = tmp_path / "exchanger.py"
    script.write_text(EXCHANGER.format(python=sys.executable))
    script.chmod(stat.S_IRWXU)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PLEXUS_TEST_OUT", str(out))
    return script


def profile(host: str, peer: str, role: Role, stun: tuple[str, int], command: Path,
            relay: Relay = NO_RELAY) -> Profile:
    return Profile(
        name=host, host=Host(host), role=role,
        peers=(Peer(peer, psk=SecretRef("inline", KEY)),),
        rendezvous=Rendezvous(Authentication("psk"), timeout=5.0),
        stun=Stun((Endpoint(*stun),), bind=Endpoint("127.0.0.1", 0), timeout=1.0, rto=0.05),
        punch=Punch(hops=64, timeout=5.0, interval=0.02),
        payload=Payload("exec", vars={"command": str(command)}),
        relay=relay)


def always(server: TurnServer) -> Relay:
    return Relay(servers=(server,), policy="always")


async def serve(board: Board, acceptor: Profile, seen: list[Any]) -> asyncio.Task[int]:
    task = asyncio.get_running_loop().create_task(plexus.up(acceptor, seen.append,
                                                            carrier=FakeCarrier(board, acceptor.host.id)))
    for _ in range(200):
        if any(e.phase == "offer-received" and e.status == "start" for e in seen):
            return task
        await asyncio.sleep(0.01)
    raise AssertionError(f"the acceptor never waited for invites: {seen}")


async def stop(task: asyncio.Task[int]) -> bool:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


def ok(seen: list[Any], phase: str) -> list[Any]:
    return [e for e in seen if e.phase == phase and e.status == "ok"]


def records() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in Path(os.environ["PLEXUS_TEST_OUT"]).iterdir()]


@pytest.mark.parametrize("holder", ["initiator", "acceptor"])
async def test_relay_policy_always_carries_the_session_through_the_relay(
        holder: str, coturn: tuple[str, int], turn_server: TurnServers, exchanger: Path) -> None:
    before = turn_server.settled_allocations()
    relay = always(turn_server.server())
    board, bob_seen, alice_seen = Board(), [], []  # type: ignore[var-annotated]
    bob = profile("bob", "alice", "accept", coturn, exchanger, relay if holder == "acceptor" else NO_RELAY)
    acceptor = await serve(board, bob, bob_seen)
    alice = profile("alice", "bob", "initiate", coturn, exchanger, relay if holder == "initiator" else NO_RELAY)
    try:
        code = await asyncio.wait_for(plexus.up(alice, alice_seen.append, carrier=FakeCarrier(board, "alice")), 30)
        for _ in range(300):  # the acceptor's payload ends a moment later
            if len(os.listdir(os.environ["PLEXUS_TEST_OUT"])) == 2:
                break
            await asyncio.sleep(0.02)
    finally:
        assert await stop(acceptor)
    assert code == 0
    for seen in (alice_seen, bob_seen):
        assert ok(seen, "launch"), seen
        punches = ok(seen, "punch")
        assert len(punches) == 1 and punches[0].data["path"] == "relayed", punches
    holders = [name for name, seen in (("initiator", alice_seen), ("acceptor", bob_seen)) if ok(seen, "relay")]
    assert holders == [holder]
    allocated = ok(alice_seen if holder == "initiator" else bob_seen, "relay")
    assert len(allocated) == 1 and allocated[0].data["server"] == relay.servers[0].url
    relayed = tuple(allocated[0].data["relayed"])
    assert relayed[0] == "127.0.0.1" and turn.RELAY_PORTS[0] <= relayed[1] <= turn.RELAY_PORTS[1]

    found = records()
    assert len(found) == 2 and found[0]["secret"] == found[1]["secret"]
    # argv: innerip innerport outerip outerport peerip peerport. The holder's payload talks to the bridge's end
    # on loopback and its outer address is the relayed one; the other side's peer is the relayed address.
    bridged = [r for r in found if (r["argv"][2], int(r["argv"][3])) == relayed]
    assert len(bridged) == 1, found
    other = next(r for r in found if r is not bridged[0])
    assert (other["argv"][4], int(other["argv"][5])) == relayed
    assert bridged[0]["argv"][4] == "127.0.0.1" and bridged[0]["argv"][5] != bridged[0]["argv"][1]
    # Each payload heard the other's hello: through the relay, from where its peer is.
    assert bridged[0]["heard"] == [f"hello from {other['argv'][1]}", [bridged[0]["argv"][4],
                                                                       int(bridged[0]["argv"][5])]]
    assert other["heard"] == [f"hello from {bridged[0]['argv'][1]}", list(relayed)]
    assert turn_server.wait_allocations(before) == before  # released once the sessions ended


async def test_wrong_relay_credentials_fail_the_initiator_before_any_invite(
        coturn: tuple[str, int], turn_server: TurnServers, exchanger: Path) -> None:
    before = turn_server.settled_allocations()
    board, bob_seen, alice_seen = Board(), [], []  # type: ignore[var-annotated]
    acceptor = await serve(board, profile("bob", "alice", "accept", coturn, exchanger), bob_seen)
    alice = profile("alice", "bob", "initiate", coturn, exchanger, always(turn_server.server("not the password")))
    try:
        with pytest.raises(RelayError) as caught:
            await asyncio.wait_for(plexus.up(alice, alice_seen.append, carrier=FakeCarrier(board, "alice")), 30)
        await asyncio.sleep(0.2)  # an invite, had one left, would reach bob now
    finally:
        assert await stop(acceptor)
    assert caught.value.exit_code == 5 and "refused our credentials" in str(caught.value)
    assert [e.status for e in alice_seen if e.phase == "relay"] == ["start", "fail"]
    assert not board.sent  # no invite left alice
    assert not ok(alice_seen, "launch") and not ok(bob_seen, "launch") and not ok(bob_seen, "offer-received")
    assert not os.listdir(os.environ["PLEXUS_TEST_OUT"])
    assert turn_server.live_allocations() == before


async def test_wrong_relay_credentials_on_the_acceptor_are_a_refusal_naming_the_relay(
        coturn: tuple[str, int], turn_server: TurnServers, exchanger: Path) -> None:
    board, bob_seen, alice_seen = Board(), [], []  # type: ignore[var-annotated]
    bob = profile("bob", "alice", "accept", coturn, exchanger, always(turn_server.server("not the password")))
    acceptor = await serve(board, bob, bob_seen)
    alice = profile("alice", "bob", "initiate", coturn, exchanger)
    try:
        with pytest.raises(PeerRefused) as caught:
            await asyncio.wait_for(plexus.up(alice, alice_seen.append, carrier=FakeCarrier(board, "alice")), 30)
    finally:
        assert await stop(acceptor)
    assert "our relay is unavailable" in str(caught.value) and "refused our credentials" in str(caught.value)
    assert [e.status for e in bob_seen if e.phase == "relay"] == ["start", "fail"]
    assert not ok(alice_seen, "launch") and not ok(bob_seen, "launch")
    assert not os.listdir(os.environ["PLEXUS_TEST_OUT"])
