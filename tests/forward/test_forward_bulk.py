"""Bulk transfers: 64 MB each way arrive intact (sha256) in bounded memory, and a target that stops reading
stops the sender instead of filling buffers.

64 MB, not 256 MB: aioquic is pure Python and both sessions share one core here (about 10-20 MB/s on loopback),
so 256 MB would take far longer than this suite's budget; the memory bound is what the size has to show.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

from fwd_support import Pairs

from plexus.forward import LocalForward
from plexus.forward import Target as Address
from plexus.forward.quic import WINDOW

MB = 1024 * 1024
SIZE = 64 * MB
MEMORY_BOUND = 150 * MB


def peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def reset_peak() -> int:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    return peak_rss()


def blocks() -> list[bytes]:
    block = os.urandom(MB)
    return [index.to_bytes(4, "big") + block[4:] for index in range(SIZE // MB)]


async def forward_to(pairs: Pairs, target_address: str) -> Address:
    forward = LocalForward.parse(f"0:{target_address}")
    pair = await pairs.make(client={"local": [forward]}, server={"expose": [Address.parse(target_address)]})
    await pair.connected()
    return pair.client.listeners.address("L", forward.bind)


async def test_64_mb_up_and_down_arrive_intact_in_bounded_memory(pairs: Pairs) -> None:
    data = blocks()
    expected = hashlib.sha256(b"".join(data)).hexdigest()

    async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hashed, size = hashlib.sha256(), 0
        while chunk := await reader.read(MB):
            hashed.update(chunk)
            size += len(chunk)
        writer.write(f"{size} {hashed.hexdigest()}".encode())

    async def source(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for block in data:
            writer.write(block)
            await writer.drain()

    up, down = await pairs.target(digest), await pairs.target(source)
    up_address, down_address = await forward_to(pairs, up.address), await forward_to(pairs, down.address)
    base = reset_peak()

    started = time.monotonic()
    reader, writer = await asyncio.open_connection(up_address.host, up_address.port)
    for block in data:
        writer.write(block)
        await writer.drain()
    writer.write_eof()
    assert await asyncio.wait_for(reader.read(), 30) == f"{SIZE} {expected}".encode()
    writer.close()
    upload = time.monotonic() - started

    started = time.monotonic()
    reader, writer = await asyncio.open_connection(down_address.host, down_address.port)
    hashed, size = hashlib.sha256(), 0
    async with asyncio.timeout(30):
        while chunk := await reader.read(MB):
            hashed.update(chunk)
            size += len(chunk)
    writer.close()
    download = time.monotonic() - started
    assert (size, hashed.hexdigest()) == (SIZE, expected)

    growth = peak_rss() - base
    print(f"\n64 MB up {SIZE / MB / upload:.1f} MB/s, down {SIZE / MB / download:.1f} MB/s, "
          f"peak RSS growth {growth / MB:.0f} MB")
    assert growth < MEMORY_BOUND


async def test_a_target_that_stops_reading_stops_the_sender(pairs: Pairs) -> None:
    reading, done = asyncio.Event(), asyncio.Event()
    got = 0

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal got
        await reading.wait()
        while chunk := await reader.read(MB):
            got += len(chunk)
        done.set()

    target = await pairs.target(stalled)
    forward = LocalForward.parse(f"0:{target.address}")
    pair = await pairs.make(client={"local": [forward]}, server={"expose": [Address.parse(target.address)]})
    await pair.connected()
    address = pair.client.listeners.address("L", forward.bind)
    _, writer = await asyncio.open_connection(address.host, address.port)
    block, accepted = bytes(MB), 0
    try:
        async with asyncio.timeout(2):  # the writer should stall long before 256 MB
            for _ in range(256):
                writer.write(block)
                accepted += MB  # in the writer's buffer now: it all has to arrive
                await writer.drain()
    except TimeoutError:
        pass
    queued = [sum(map(len, stream._chunks)) for stream in pair.server.link.streams.values()]
    buffered = [pair.client.link.buffered(stream_id) for stream_id in pair.client.link.streams]
    assert accepted < 64 * MB, "the sender was not held back"
    assert max(queued) <= WINDOW, "the peer sent past our receive window"
    assert max(buffered) <= 2 * WINDOW
    reading.set()  # and it all flows once the target reads again
    writer.write_eof()
    await asyncio.wait_for(done.wait(), 10)
    assert got == accepted == pair.client.stats()[str(forward)].bytes_out
    writer.close()
