"""One QUIC stream as the forwarding code sees it: ``read()`` / ``write()`` with back-pressure both ways.

Toward QUIC, ``write`` waits while more than ``HIGH`` bytes of the stream are unacknowledged (the link wakes it
when acks bring that below ``LOW``), so a TCP socket is never read faster than QUIC delivers. From QUIC,
``read`` hands over what arrived and ``consumed(n)`` reopens the peer's window only once ``n`` bytes reached the
TCP socket (``plexus.forward.quic``). A reset, a STOP_SENDING or the end of the connection makes ``read`` and
``write`` raise ``StreamClosed`` with the error code.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from plexus.forward.quic import WINDOW
from plexus.forward.wire import REASONS

HIGH = WINDOW  # unacked bytes of one stream before its writer waits
LOW = WINDOW // 2


class StreamClosed(Exception):
    """The stream was reset or stopped by the peer, or the connection ended."""

    def __init__(self, code: int) -> None:
        super().__init__(REASONS.get(code, f"stream error {code:#x}"))
        self.code = code


class Carrier(Protocol):
    """What a stream needs of its link (``plexus.forward.link.Link``)."""

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None: ...

    def abort_stream(self, stream_id: int, code: int) -> None: ...

    def consume(self, stream_id: int, size: int) -> None: ...

    def buffered(self, stream_id: int) -> int: ...

    def block(self, stream: Stream) -> None: ...

    def forget(self, stream: Stream) -> None: ...


class Stream:
    def __init__(self, link: Carrier, stream_id: int) -> None:
        self.link, self.id = link, stream_id
        self._chunks: deque[bytes] = deque()
        self._fin = False  # the peer ended its direction (all its bytes are in _chunks)
        self._sent_fin = False
        self.error: int | None = None  # reset / stopped / connection gone
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    # from the link (data and events of this stream)

    def deliver(self, data: bytes, end: bool) -> None:
        if data:
            self._chunks.append(data)
        self._fin = self._fin or end
        self._readable.set()

    def fail(self, code: int) -> None:
        if self.error is None:
            self.error = code
        self._readable.set()
        self._writable.set()

    def wake(self) -> None:
        self._writable.set()

    # for the application

    async def read(self) -> bytes:
        """What arrived since the last read (at least one byte), or b"" once the peer ended its direction."""
        while not self._chunks:
            if self.error is not None:
                raise StreamClosed(self.error)
            if self._fin:
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front (what followed a header)."""
        if data:
            self._chunks.appendleft(data)

    def consumed(self, size: int) -> None:
        """``size`` bytes read from this stream are gone for good (in the TCP socket): the peer may send more."""
        if size:
            self.link.consume(self.id, size)

    async def write(self, data: bytes) -> None:
        while self.link.buffered(self.id) >= HIGH and self.error is None:
            self._writable.clear()
            self.link.block(self)
            await self._writable.wait()
        if self.error is not None:
            raise StreamClosed(self.error)
        self.link.send_data(self.id, data, False)

    def write_eof(self) -> None:
        if self.error is None and not self._sent_fin:
            self._sent_fin = True
            self.link.send_data(self.id, b"", True)

    def abort(self, code: int) -> None:
        """Reset both directions (a refusal, a TCP reset, a failure on our side)."""
        if self.error is None:
            self.error = code
            self.link.abort_stream(self.id, code)
        self.fail(code)

    def close(self) -> None:
        """The application is done with the stream (both directions ended, or aborted)."""
        self.link.forget(self)
