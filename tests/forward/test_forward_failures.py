"""How a forward session fails: a forged fingerprint on either side, a path that dies, a restart that adopts the
listeners, strangers' datagrams, bad settings."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from fwd_support import LOOPBACK, Pairs, echo

from plexus.errors import LaunchError
from plexus.forward import ForwardSession, Identity, Listeners, LocalForward, RemoteForward, run_forward
from plexus.forward import Target as Address

FORGED = "sha256:" + "ab" * 32


async def ends_with(session: ForwardSession, timeout: float) -> str:
    with pytest.raises(LaunchError) as failure:
        await asyncio.wait_for(session.wait(), timeout)
    return str(failure.value)


@pytest.mark.parametrize("forged", ["client", "server"])
async def test_a_forged_fingerprint_on_either_side_lets_no_stream_through(pairs: Pairs, forged: str) -> None:
    target = await pairs.target(echo)
    forward = LocalForward.parse(f"0:{target.address}")
    pins = {"client_pin": FORGED} if forged == "client" else {"server_pin": FORGED}
    pair = await pairs.make(client={"local": [forward]}, server={"expose": [Address.parse(target.address)]}, **pins)
    address = pair.client.listeners.address("L", forward.bind)
    reader, writer = await asyncio.open_connection(address.host, address.port)  # held: no session is live
    writer.write(b"secret")
    detecting, other = (pair.client, pair.server) if forged == "client" else (pair.server, pair.client)
    detected = await ends_with(detecting, 5)
    assert f"peer certificate fingerprint mismatch: expected {FORGED}, got sha256:" in detected
    assert "the peer refused our certificate: peer certificate fingerprint mismatch" in await ends_with(other, 5)
    report = pair.client_report if forged == "client" else pair.server_report
    assert report.of("fingerprint-mismatch")[0]["expected"] == FORGED
    assert "connected" not in pair.client_report.kinds() + pair.server_report.kinds()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert target.accepted == 0


async def test_when_the_path_dies_connections_end_within_the_idle_timeout(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    forward = LocalForward.parse(f"0:{target.address}")
    short = {"idle_timeout": 2.0, "ping_interval": 0.5}
    pair = await pairs.make(client={"local": [forward], **short},
                            server={"expose": [Address.parse(target.address)], **short}, relay=True)
    await pair.connected()
    address = pair.client.listeners.address("L", forward.bind)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    await asyncio.sleep(3)  # the pings keep an idle session alive past the idle timeout
    writer.write(b"pong")
    assert await reader.readexactly(4) == b"pong"
    assert pair.relay is not None
    pair.relay.cut()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 6) == b""
    assert loop.time() - started < 4.5  # 2 s idle timeout (or 3 PTO, if longer) and some slack
    writer.close()
    assert "idle timeout" in await ends_with(pair.client, 3)
    assert "idle timeout" in await ends_with(pair.server, 3)
    assert "idle timeout" in pair.client_report.of("closed")[0]["reason"]


async def test_a_new_session_adopts_the_listeners_after_a_restart(pairs: Pairs, listeners: Listeners) -> None:
    target = await pairs.target(echo)
    forward = LocalForward.parse(f"0:{target.address}")
    options = {"client": {"local": [forward], "listeners": listeners},
               "server": {"expose": [Address.parse(target.address)]}}
    first = await pairs.make(**options)  # type: ignore[arg-type]
    await first.connected()
    address = listeners.address("L", forward.bind)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"one")
    assert await reader.readexactly(3) == b"one"
    await first.server.close()  # the peer goes: the client's session ends, its connection is reset
    assert "closed by the peer" in await ends_with(first.client, 5)
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    # between sessions the port stays open; a connection waits (up to hold) for the next session
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"early")
    second = await pairs.make(**options)  # type: ignore[arg-type]
    await second.connected()
    assert await asyncio.wait_for(reader.readexactly(5), 5) == b"early"
    assert second.client_report.of("listening")[0]["adopted"] is True
    assert listeners.address("L", forward.bind) == address
    writer.close()
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"two")
    assert await reader.readexactly(3) == b"two"
    writer.close()
    assert listeners.held == 1 and listeners.turned_away == 0


async def test_the_peers_remote_listeners_are_adopted_too(pairs: Pairs, listeners: Listeners) -> None:
    target = await pairs.target(echo)
    forward = RemoteForward.parse(f"127.0.0.1:0:{target.address}")
    options = {"client": {"remote": [forward]}, "server": {"listeners": listeners}}
    first = await pairs.make(**options)  # type: ignore[arg-type]
    address = Address.parse((await first.client_report.wait_for("remote-listening"))["address"])
    await first.client.close()
    assert "closed by the peer" in await ends_with(first.server, 5)
    second = await pairs.make(**options)  # type: ignore[arg-type]
    assert (await second.server_report.wait_for("serving"))["adopted"] is True
    assert Address.parse((await second.client_report.wait_for("remote-listening"))["address"]) == address
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"again")
    assert await reader.readexactly(5) == b"again"
    writer.close()


async def test_cancelling_run_forward_closes_the_session_and_tells_the_peer(pairs: Pairs) -> None:
    pair = await pairs.make(start=False)
    await pair.server.start()
    running = asyncio.ensure_future(run_forward(pair.client))
    await pair.connected()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert "closed by the peer: closed" in await ends_with(pair.server, 3)
    assert pair.client_report.of("closed")[0]["by_us"] is True


async def test_datagrams_from_strangers_are_dropped_and_counted(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    forward = LocalForward.parse(f"0:{target.address}")
    pair = await pairs.make(client={"local": [forward]}, server={"expose": [Address.parse(target.address)]})
    await pair.connected()
    assert pair.server.address is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for size in (1, 100, 1200, 1500, 1200):
            stranger.sendto(b"\xc0" * size, pair.server.address)  # long-header junk, Initial-sized too
    await asyncio.sleep(0.2)
    assert pair.server.strangers == 5
    address = pair.client.listeners.address("L", forward.bind)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"still fine")
    assert await reader.readexactly(10) == b"still fine"
    writer.close()


async def test_a_server_with_no_client_gives_up_after_the_idle_timeout() -> None:
    me, peer = Identity.generate(), Identity.generate()
    session = ForwardSession(bind=(LOOPBACK, 0), peer=(LOOPBACK, 9), client=False, identity=me,
                             peer_fingerprint=peer.fingerprint, idle_timeout=1.0, ping_interval=0.5)
    await session.start()
    assert "no QUIC handshake with 127.0.0.1:9 within 1s" in await ends_with(session, 3)


@pytest.mark.parametrize(("options", "message"), [
    ({"ping_interval": 20.0}, "ping_interval 20s must be in (0, 15]"),
    ({"ping_interval": 5.0, "idle_timeout": 4.0}, "below idle_timeout (4s)"),
    ({"peer_fingerprint": "sha256:xyz"}, "is not a certificate fingerprint"),
    ({"peer": ("peer.example", 1)}, "is not an IP address"),
    ({"local": [LocalForward.parse("8000:a:1"), LocalForward.parse("8000:b:2")]}, "the same address"),
])
async def test_bad_settings_are_one_clear_line(options: dict[str, object], message: str) -> None:
    settings: dict[str, object] = {"bind": (LOOPBACK, 0), "peer": (LOOPBACK, 9), "client": True,
                                   "identity": Identity.generate(), "peer_fingerprint": FORGED}
    with pytest.raises(LaunchError, match=None) as failure:
        ForwardSession(**(settings | options))  # type: ignore[arg-type]
    assert message in str(failure.value) and "\n" not in str(failure.value)


async def test_a_port_in_use_is_a_launch_error(pairs: Pairs) -> None:
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        pair = await pairs.make(client={"local": [LocalForward.parse(f"{port}:127.0.0.1:9")]}, start=False)
        with pytest.raises(LaunchError, match=f"cannot listen on TCP 127.0.0.1:{port}"):
            await pair.client.start()
