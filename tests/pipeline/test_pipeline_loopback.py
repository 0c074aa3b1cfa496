"""The whole pipeline in one event loop, without root: two ``plexus.up()`` calls on loopback, a real STUN server
(coturn on 127.0.0.1), offers carried by an in-memory carrier (``up(carrier=...)``, authenticated with per-peer
pre-shared keys as a profile would), a real punch between two UDP ports, and the ``exec`` template launching a
real program on both sides. Also a refusal, a forged invite and a timeout."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from support.carriers import Board, FakeCarrier

import plexus
from plexus.profile.model import (
    Authentication,
    Endpoint,
    Host,
    Payload,
    Peer,
    Profile,
    Punch,
    Rendezvous,
    SecretRef,
    Stun,
)

KEYS = {frozenset({"alice", "bob"}): "alice and bob's own key", frozenset({"carol", "bob"}): "carol and bob's key"}
RECORDER = """#!{python}
import json, os, sys, time
# the exec template's positional call: COMMAND innerip innerport outerip outerport peerip peerport secretfile
with open(sys.argv[7]) as secret:
    record = {{"argv": sys.argv[1:], "secret": secret.read().strip(), "env": os.environ.get("PLEXUS_TEST_SIDE")}}
with open(os.path.join(os.environ["PLEXUS_TEST_OUT"], sys.argv[2] + ".json"), "w") as out:
    json.dump(record, out)
time.sleep(float(os.environ.get("PLEXUS_TEST_HOLD", "0")))
"""


@pytest.fixture
def recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A payload program that writes what it was called with to PLEXUS_TEST_OUT/<inner port>.json."""
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER.format(python=sys.executable))
    script.chmod(stat.S_IRWXU)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("PLEXUS_TEST_OUT", str(out))
    return script


def profile(host: str, peers: list[str], role: str, stun: tuple[str, int], command: Path, *,
            bind_port: int = 0, timeout: float = 5.0, keys: dict[frozenset[str], str] = KEYS) -> Profile:
    return Profile(
        name=host, host=Host(host), role=role,  # type: ignore[arg-type]
        peers=tuple(Peer(peer, psk=SecretRef("inline", keys[frozenset({host, peer})])) for peer in peers),
        rendezvous=Rendezvous(Authentication("psk"), timeout=timeout),
        stun=Stun((Endpoint(*stun),), bind=Endpoint("127.0.0.1", bind_port), timeout=1.0, rto=0.05),
        punch=Punch(hops=64, timeout=5.0, interval=0.02),
        payload=Payload("exec", vars={"command": str(command)}))


async def serve(board: Board, acceptor: Profile, seen: list[Any]) -> asyncio.Task[int]:
    task = asyncio.get_running_loop().create_task(plexus.up(acceptor, seen.append,
                                                            carrier=FakeCarrier(board, acceptor.host.id)))
    for _ in range(200):
        if any(e.phase == "offer-received" and e.status == "start" for e in seen):
            return task
        await asyncio.sleep(0.01)
    raise AssertionError(f"the acceptor never waited for invites: {seen}")


def launched(seen: list[Any]) -> list[Any]:
    return [e for e in seen if e.phase == "launch" and e.status == "ok"]


async def stop(task: asyncio.Task[int]) -> bool:
    """Cancel an acceptor (it serves until then); True when it stopped cleanly by that cancellation."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return True
    return False


async def test_two_up_calls_reach_the_payload_on_both_sides(coturn: tuple[str, int], recorder: Path) -> None:
    board, bob_seen, alice_seen = Board(), [], []  # type: ignore[var-annotated]
    bob = profile("bob", ["alice", "carol"], "accept", coturn, recorder)
    acceptor = await serve(board, bob, bob_seen)
    alice = profile("alice", ["bob"], "initiate", coturn, recorder)
    code = await asyncio.wait_for(plexus.up(alice, alice_seen.append, carrier=FakeCarrier(board, "alice")), 30)
    assert code == 0
    for _ in range(200):  # the acceptor's payload is launched a moment later
        if launched(bob_seen) and len(os.listdir(os.environ["PLEXUS_TEST_OUT"])) == 2:
            break
        await asyncio.sleep(0.02)
    assert await stop(acceptor)
    assert launched(alice_seen) and launched(bob_seen)
    records = [json.loads(path.read_text()) for path in Path(os.environ["PLEXUS_TEST_OUT"]).iterdir()]
    assert len(records) == 2 and records[0]["secret"] == records[1]["secret"] and len(records[0]["secret"]) == 64
    ends = {(r["argv"][0], r["argv"][1]): (r["argv"][4], r["argv"][5]) for r in records}
    assert ends == {mine: peer for peer, mine in ends.items()}  # each side's peer endpoint is the other's own
    assert all(r["secret"] not in r["argv"] for r in records)  # the secret came by file, not argv
    phases = [(e.phase, e.status) for e in alice_seen]
    for step in ("nat", "rendezvous", "offer-sent", "offer-received", "punch", "launch"):
        assert (step, "ok") in phases, (step, phases)


async def test_a_busy_fixed_port_is_refused_and_the_initiator_hears_why(coturn: tuple[str, int],
                                                                          recorder: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_HOLD", "30")  # alice's session stays up while carol asks
    board, bob_seen = Board(), []  # type: ignore[var-annotated]
    with_port = profile("bob", ["alice", "carol"], "accept", coturn, recorder, bind_port=_free_port())
    acceptor = await serve(board, with_port, bob_seen)
    alice = asyncio.get_running_loop().create_task(plexus.up(
        profile("alice", ["bob"], "initiate", coturn, recorder), carrier=FakeCarrier(board, "alice")))
    for _ in range(500):
        if launched(bob_seen):
            break
        await asyncio.sleep(0.02)
    assert launched(bob_seen), bob_seen
    with pytest.raises(plexus.RendezvousError, match="refused: busy: our fixed UDP port"):
        await plexus.up(profile("carol", ["bob"], "initiate", coturn, recorder), carrier=FakeCarrier(board, "carol"))
    alice.cancel()
    await asyncio.gather(alice, return_exceptions=True)
    assert await stop(acceptor)
    assert len(launched(bob_seen)) == 1


async def test_a_forged_invite_launches_nothing_and_the_forger_times_out(coturn: tuple[str, int],
                                                                          recorder: Path) -> None:
    board, bob_seen = Board(), []  # type: ignore[var-annotated]
    acceptor = await serve(board, profile("bob", ["alice", "carol"], "accept", coturn, recorder), bob_seen)
    carol_as_alice = profile("alice", ["bob"], "initiate", coturn, recorder, timeout=1.0,
                             keys={frozenset({"alice", "bob"}): KEYS[frozenset({"carol", "bob"})]})
    with pytest.raises(plexus.RendezvousError, match="'bob' did not answer within 1 s"):
        await plexus.up(carol_as_alice, carrier=FakeCarrier(board, "alice"))
    assert await stop(acceptor)
    assert not launched(bob_seen) and not any(e.phase == "offer-received" and e.status == "ok" for e in bob_seen)


async def test_no_acceptor_is_a_timeout_with_the_likely_causes(coturn: tuple[str, int], recorder: Path) -> None:
    with pytest.raises(plexus.RendezvousError) as caught:
        await plexus.up(profile("alice", ["bob"], "initiate", coturn, recorder, timeout=0.5),
                        carrier=FakeCarrier(Board(), "alice"))
    assert caught.value.hint is not None and "plexus is not running on 'bob'" in caught.value.hint
    assert not os.listdir(os.environ["PLEXUS_TEST_OUT"])


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
