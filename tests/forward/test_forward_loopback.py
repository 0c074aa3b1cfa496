"""Forwarding over loopback: -L, -R and -D to real TCP servers, refusals, half-close, resets, 100 connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

import pytest
from fwd_support import LOOPBACK, Pairs, Target, echo

from plexus.forward import LocalForward, RemoteForward, Socks
from plexus.forward import Target as Address


async def local_pair(pairs: Pairs, target: Target, *, exposed: bool = True, **client: object) -> tuple:
    forward = LocalForward.parse(f"0:{target.address}")
    expose = [Address.parse(target.address)] if exposed else []
    pair = await pairs.make(client={"local": [forward], **client}, server={"expose": expose})
    await pair.connected()
    return pair, pair.client.listeners.address("L", forward.bind)


async def roundtrip(address: Address, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(payload)
    await writer.drain()
    data = await reader.readexactly(len(payload))
    writer.close()
    return data


async def test_local_forward_reaches_an_exposed_echo_server(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    pair, address = await local_pair(pairs, target)
    assert await roundtrip(address, b"hello through quic") == b"hello through quic"
    await pair.client_report.wait_for("close")
    stats = pair.client.stats()[f"-L 127.0.0.1:0:{target.address}"]
    assert (stats.open, stats.total, stats.bytes_out, stats.bytes_in) == (0, 1, 18, 18)
    assert target.accepted == 1
    assert pair.server.stats()[f"to {target.address}"].total == 1


async def test_remote_forward_listens_on_the_peer_and_connects_back(pairs: Pairs) -> None:
    target = await pairs.target(echo)  # on the client's side; the -R names it, which exposes it
    forward = RemoteForward.parse(f"127.0.0.1:0:{target.address}")
    pair = await pairs.make(client={"remote": [forward]})
    info = await pair.client_report.wait_for("remote-listening")
    assert (await pair.server_report.wait_for("serving"))["address"] == info["address"]
    address = pair.client.remote_addresses[forward]
    assert await roundtrip(address, b"back again") == b"back again"
    assert target.accepted == 1


async def test_the_server_side_may_ask_for_remote_forwards_too(pairs: Pairs) -> None:
    target = await pairs.target(echo)  # on the server's side
    forwards = [RemoteForward.parse(f"127.0.0.1:0:{target.address}"), RemoteForward.parse("localhost:0:127.0.0.1:9")]
    pair = await pairs.make(server={"remote": forwards})
    async with asyncio.timeout(5):
        while len(pair.server.remote_addresses) < 2:
            await asyncio.sleep(0.01)
    assert await roundtrip(pair.server.remote_addresses[forwards[0]], b"the other way") == b"the other way"
    assert len(pair.client_report.of("serving")) == 2


async def test_remote_forward_on_a_non_loopback_address_is_refused_by_the_peer(pairs: Pairs) -> None:
    forward = RemoteForward.parse("0.0.0.0:0:127.0.0.1:9")
    pair = await pairs.make(client={"remote": [forward]})
    failed = await pair.client_report.wait_for("remote-failed")
    assert "loopback only" in failed["reason"]
    assert "loopback only" in (await pair.server_report.wait_for("serve-failed"))["reason"]


async def socks_connect(address: Address, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A minimal SOCKS5 client: no auth, then ``request`` (address type, address, port) for CONNECT."""
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00" + request)
    reply = await reader.readexactly(10)
    assert reply[0] == 5
    return reader, writer, reply[1]


async def test_socks_connects_to_exposed_targets_by_address_and_by_name(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    socks = Socks.parse("127.0.0.1:0")
    expose = [Address.parse(target.address), Address("localhost", target.port)]
    pair = await pairs.make(client={"socks": [socks]}, server={"expose": expose})
    await pair.connected()
    address = pair.client.listeners.address("D", socks.bind)
    port = struct.pack(">H", target.port)
    for request in (b"\x01" + socket.inet_aton(LOOPBACK) + port, b"\x03\x09localhost" + port):
        reader, writer, code = await socks_connect(address, request)
        assert code == 0
        writer.write(b"socks data")
        assert await reader.readexactly(10) == b"socks data"
        writer.close()
    assert target.accepted == 2


async def test_socks_to_a_target_not_exposed_is_not_allowed(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    socks = Socks.parse("127.0.0.1:0")
    pair = await pairs.make(client={"socks": [socks]})
    await pair.connected()
    address = pair.client.listeners.address("D", socks.bind)
    request = b"\x01" + socket.inet_aton(LOOPBACK) + struct.pack(">H", target.port)
    reader, writer, code = await socks_connect(address, request)
    assert code == 0x02  # connection not allowed by ruleset
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    assert target.accepted == 0
    assert (await pair.server_report.wait_for("refused"))["target"] == target.address


async def test_a_target_not_exposed_is_refused_and_the_connection_closed(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    pair, address = await local_pair(pairs, target, exposed=False)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"let me in")
    started = asyncio.get_running_loop().time()
    with contextlib.suppress(ConnectionResetError):  # a reset or an EOF, but quickly
        assert await asyncio.wait_for(reader.read(), 2) == b""
    assert asyncio.get_running_loop().time() - started < 2
    refused = await pair.server_report.wait_for("refused")
    assert refused["target"] == target.address and refused["reason"] == "not exposed"
    assert target.accepted == 0
    assert pair.server.stats()[f"to {target.address}"].refused == 1


async def test_half_close_reaches_the_target_and_the_reply_comes_back(pairs: Pairs) -> None:
    async def count_then_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read()  # until the client's FIN
        writer.write(f"got {len(data)} bytes".encode())
        await writer.drain()

    target = await pairs.target(count_then_reply)
    _, address = await local_pair(pairs, target)
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"x" * 100_000)
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 5) == b"got 100000 bytes"
    writer.close()


async def test_resets_cross_both_ways(pairs: Pairs) -> None:
    seen: list[str] = []
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def watch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)
        try:
            seen.append("eof" if await reader.read() == b"" else "data")
        except ConnectionResetError:
            seen.append("reset")

    target = await pairs.target(watch)
    _, address = await local_pair(pairs, target)
    # our client resets: the target sees its connection end
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"hi")
    await accepted.get()
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
    async with asyncio.timeout(3):
        while not seen:
            await asyncio.sleep(0.02)
    assert seen == ["reset"]
    # the target resets: our client sees a reset
    reader, writer = await asyncio.open_connection(address.host, address.port)
    far = await asyncio.wait_for(accepted.get(), 3)
    far.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    far.transport.abort()
    with pytest.raises(ConnectionResetError):  # not a clean EOF
        await asyncio.wait_for(reader.read(), 3)
    writer.close()


async def test_a_hundred_concurrent_connections_echo_correctly(pairs: Pairs) -> None:
    target = await pairs.target(echo)
    _, address = await local_pair(pairs, target)
    payloads = [os.urandom(20_000 + 97 * n) for n in range(100)]
    results = await asyncio.wait_for(asyncio.gather(*(roundtrip(address, p) for p in payloads)), 30)
    assert results == payloads
    assert target.accepted == 100
