"""Bytes between one TCP connection and one QUIC stream, both ways, with TCP's semantics carried across.

- A TCP FIN becomes the stream's FIN, and the peer's FIN a ``shutdown(SHUT_WR)`` here: half-close works.
- A TCP reset or error resets the stream (``TCP_RESET``); a stream reset, STOP_SENDING or the end of the
  connection resets the TCP connection (RST): a dead path never looks like a clean end, and nothing hangs.
- Back-pressure: TCP is read only as fast as the stream's writer is let through (``Stream.write``), and the
  peer may send more only after ``writer.drain()`` (``Stream.consumed``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from plexus.forward.listeners import reset
from plexus.forward.stream import Stream, StreamClosed
from plexus.forward.wire import GOING_AWAY, TCP_RESET, FrameReader, WireError, parse_reply

CHUNK = 64 * 1024


@dataclass
class ForwardStats:
    """One forward's connections and bytes (``bytes_out``: from TCP toward the peer)."""

    open: int = 0
    total: int = 0
    refused: int = 0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class Traffic:
    """One connection's bytes: ``sent`` from TCP into the stream, ``received`` from the stream into TCP; added
    to its forward's ``totals`` as they pass."""

    totals: ForwardStats
    sent: int = 0
    received: int = 0
    error: str | None = None  # why it ended abnormally (None: both directions ended cleanly)

    def outgoing(self, size: int) -> None:
        self.sent += size
        self.totals.bytes_out += size

    def incoming(self, size: int) -> None:
        self.received += size
        self.totals.bytes_in += size


async def read_header(stream: Stream) -> dict[str, Any]:
    """The stream's first frame; what follows it stays in the stream. WireError if the stream ends first."""
    frames, fed = FrameReader(), 0
    while True:
        data = await stream.read()
        if not data:
            raise WireError("the stream ended before its header")
        frames.feed(data)
        fed += len(data)
        if (message := frames.next()) is not None:
            rest = frames.rest()
            stream.consumed(fed - len(rest))
            stream.unread(rest)
            return message


async def splice(stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, traffic: Traffic,
                 *, expect_reply: bool = False) -> None:
    """Pump until both directions ended or one side failed; always closes (or resets) the TCP connection and
    releases the stream. ``expect_reply``: the peer's ``{"ok": true}`` comes first on the stream."""

    async def outward() -> None:  # TCP -> QUIC
        while data := await reader.read(CHUNK):
            await stream.write(data)
            traffic.outgoing(len(data))
        stream.write_eof()

    async def inward() -> None:  # QUIC -> TCP
        if expect_reply:
            parse_reply(await read_header(stream))
        while data := await stream.read():
            writer.write(data)
            await writer.drain()
            stream.consumed(len(data))
            traffic.incoming(len(data))
        if writer.can_write_eof():
            writer.write_eof()

    tasks = [asyncio.ensure_future(outward()), asyncio.ensure_future(inward())]
    clean = False
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = next((task for task in done if task.exception() is not None), None)
        if failed is None:
            clean = True
        else:
            error = failed.exception()
            traffic.error = str(error) or type(error).__name__
            if not isinstance(error, StreamClosed):
                stream.abort(TCP_RESET)  # the TCP side failed (or the reply was not ok): tell the peer
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if clean:
            writer.close()
        else:
            traffic.error = traffic.error or "cancelled"
            stream.abort(GOING_AWAY)  # no effect after an abort or once the connection is gone
            reset(writer)
        stream.close()
