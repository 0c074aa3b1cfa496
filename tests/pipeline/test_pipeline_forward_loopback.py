"""The built-in ``forward`` payload through the whole pipeline, in one event loop, without root: two
``plexus.up()`` calls on loopback (real STUN, an in-memory carrier with per-peer PSKs, a real punch), then QUIC on
the punched ports; a TCP client through alice's -L reaches bob's echo server; a target bob does not expose is
refused; the fingerprints travel in the offers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def profile(host: str, peer: str, role: str, stun: tuple[str, int], vars: dict[str, Any]) -> Profile:
    return Profile(
        name=host, host=Host(host), role=role,  # type: ignore[arg-type]
        peers=(Peer(peer, psk=SecretRef("inline", "alice and bob's forward key")),),
        rendezvous=Rendezvous(Authentication("psk"), timeout=5.0),
        stun=Stun((Endpoint(*stun),), bind=Endpoint("127.0.0.1", 0), timeout=1.0, rto=0.05),
        punch=Punch(hops=64, timeout=5.0, interval=0.02),
        payload=Payload("forward", vars=vars))


async def ready(seen: list[Any], count: int = 1) -> None:
    for _ in range(500):
        if sum(1 for e in seen if e.phase == "payload" and e.message == "ready") >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"forward never ready: {[(e.phase, e.status, e.message) for e in seen]}")


async def test_a_local_forward_through_the_pipeline(coturn: tuple[str, int]) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"echo:" + await reader.read(1024))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = server.sockets[0].getsockname()[1]
    hidden = await asyncio.start_server(echo, "127.0.0.1", 0)
    hidden_port = hidden.sockets[0].getsockname()[1]
    local, refused_local = free_port(), free_port()
    board, bob_seen, alice_seen = Board(), [], []  # type: ignore[var-annotated]
    bob = profile("bob", "alice", "accept", coturn, {"expose": [f"127.0.0.1:{echo_port}"]})
    alice = profile("alice", "bob", "initiate", coturn, {"local": [f"127.0.0.1:{local}:127.0.0.1:{echo_port}",
                                                                   f"{refused_local}:127.0.0.1:{hidden_port}"]})
    acceptor = asyncio.get_running_loop().create_task(plexus.up(bob, bob_seen.append,
                                                                carrier=FakeCarrier(board, "bob")))
    await asyncio.sleep(0.3)
    initiator = asyncio.get_running_loop().create_task(plexus.up(alice, alice_seen.append,
                                                                 carrier=FakeCarrier(board, "alice")))
    try:
        await ready(alice_seen)
        await ready(bob_seen)
        reader, writer = await asyncio.open_connection("127.0.0.1", local)
        writer.write(b"hello through QUIC")
        await writer.drain()
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 10) == b"echo:hello through QUIC"
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", refused_local)
        writer.write(b"let me in")
        with contextlib.suppress(ConnectionResetError):  # refused: reset (or closed), never answered
            assert await asyncio.wait_for(reader.read(), 10) == b"", "a target bob does not expose answered"
        writer.close()
        for _ in range(100):
            if any(e.status == "warn" and "refused" in e.message for e in bob_seen):
                break
            await asyncio.sleep(0.02)
        assert any(e.status == "warn" and f"127.0.0.1:{hidden_port}" in e.message for e in bob_seen), bob_seen
        launch = next(e for e in alice_seen if e.phase == "launch" and e.status == "ok")
        assert "in plexus" in launch.message
    finally:
        for task in (initiator, acceptor):
            task.cancel()
        await asyncio.gather(initiator, acceptor, return_exceptions=True)
        server.close()
        hidden.close()
