"""The asyncio side of the QUIC connection: our own UDP socket, one peer address, timers, pings and the streams.

Only datagrams from the peer's address reach QUIC; others are dropped and counted (``strangers``), so there is
no path migration. The client connects at ``start()``; the server creates its one connection from the peer's
first Initial packet and never another. Events become stream data, resets and the one ``ended`` future (why the
connection is over, as one line). No stream data is taken before the handshake showed the pinned certificate,
and no stream opened before the peer confirmed the handshake (it accepted our certificate).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import socket
from collections.abc import Callable

from aioquic.buffer import Buffer
from aioquic.quic import events
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE
from aioquic.quic.packet import QuicErrorCode, QuicPacketType, pull_quic_header
from aioquic.tls import AlertDescription

from plexus.errors import LaunchError
from plexus.forward.certs import Identity
from plexus.forward.quic import PinnedConnection, configuration
from plexus.forward.stream import LOW, Stream
from plexus.forward.wire import GOING_AWAY, NO_ERROR, UNVERIFIED

Address = tuple[str, int]
SOCKET_BUFFER = 4 * 1024 * 1024  # asked for; the kernel caps it at net.core.[rw]mem_max
BATCH = 64  # datagrams read per wakeup
_REJECTED_US = {QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate,
                QuicErrorCode.CRYPTO_ERROR + AlertDescription.certificate_required}
IpKey = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


def _key(addr: tuple[str, int] | tuple[str, int, int, int]) -> IpKey:
    """An address to compare: IPv4-mapped IPv6 as IPv4, without a scope."""
    ip = ipaddress.ip_address(addr[0].partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, addr[1]
    return ip, addr[1]


class Link:
    """The QUIC connection with ``peer``. ``await bind(address)``, ``start()``, then streams until ``ended``."""

    def __init__(self, *, peer: Address, client: bool, identity: Identity, pin: str, idle_timeout: float,
                 ping_interval: float, on_ready: Callable[[], None], on_stream: Callable[[Stream], None]) -> None:
        self.loop = asyncio.get_running_loop()
        try:
            self.peer_key = _key(peer)
        except ValueError:
            raise LaunchError(f"forward: the peer address {peer[0]!r} is not an IP address") from None
        self.peer, self.client, self.pin = peer, client, pin
        self.idle_timeout, self.ping_interval = idle_timeout, ping_interval
        self.on_ready, self.on_stream = on_ready, on_stream
        self.config = configuration(client=client, identity=identity, idle_timeout=idle_timeout)
        self.conn: PinnedConnection | None = None
        self.streams: dict[int, Stream] = {}
        self.verified = False  # the handshake showed the pinned certificate: the peer's streams are taken
        self.ready = False  # and the peer has verified ours: we open streams
        self.ended: asyncio.Future[str] = self.loop.create_future()
        # datagrams from others; unusable ones; not sent (buffer full); socket errors (ICMP unreachable)
        self.strangers = self.ignored = self.dropped = self.errors = 0
        self._blocked: set[Stream] = set()
        self._sock: socket.socket | None = None
        self._peer_seen_as: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_handle: asyncio.Handle | None = None
        self._later: list[asyncio.TimerHandle] = []
        self._reason: str | None = None  # set by our own close()
        self._peer_next = 1 if client else 0  # the lowest peer-initiated stream id not seen yet
        self._peer_above: set[int] = set()  # peer-initiated ids seen above _peer_next
        self._pings = itertools.count()

    async def bind(self, address: Address) -> Address:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        if family == socket.AF_INET and isinstance(self.peer_key[0], ipaddress.IPv6Address):
            raise LaunchError(f"forward: cannot reach the IPv6 peer {self.peer[0]} from IPv4 {address[0]}")
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.bind(address)
        except OSError as error:
            sock.close()
            raise LaunchError(f"forward: cannot bind UDP {address[0]}:{address[1]}: {error.strerror}") from error
        if family == socket.AF_INET6 and isinstance(self.peer_key[0], ipaddress.IPv4Address):
            self.peer = (f"::ffff:{self.peer_key[0]}", self.peer[1])  # a dual-stack socket sends to mapped v4
        sock.setblocking(False)
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._read_ready)
        name = sock.getsockname()
        return (name[0], name[1])

    def start(self) -> None:
        self._later.append(self.loop.call_later(self.idle_timeout, self._no_handshake))
        if self.client:
            self.conn = PinnedConnection(configuration=self.config, pin=self.pin)
            self.conn.connect(self.peer, now=self.loop.time())
            self.transmit()

    def close(self, code: int = NO_ERROR, reason: str = "closed") -> None:
        """Close the connection (CONNECTION_CLOSE goes out now) and end the link with ``reason``."""
        if self.ended.done():
            return
        self._reason = reason
        if self.conn is not None:
            self.conn.close(error_code=code, reason_phrase=reason)
            self.transmit()
        self._finish(reason)

    def open_stream(self, header: bytes) -> Stream:
        """A new bidirectional stream of ours, its first bytes (the header) sent at once to claim its id."""
        assert self.conn is not None and self.ready
        stream = Stream(self, self.conn.get_next_available_stream_id())
        if self.ended.done():
            stream.fail(GOING_AWAY)  # too late: the caller sees the end at its first read or write
            return stream
        self.streams[stream.id] = stream
        self.send_data(stream.id, header, False)
        return stream

    # the socket: read in batches (asyncio's datagram transport takes one datagram per loop turn), then handle
    # the events and transmit once per batch

    def _read_ready(self) -> None:
        sock = self._sock
        assert sock is not None
        for _ in range(BATCH):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP port unreachable while the peer rebinds; QUIC retransmits
                self.errors += 1
                continue
            self._received(data, addr)
        if self.conn is not None and not self.ended.done():
            self._process()
            for stream in [s for s in self._blocked if self.conn.send_buffered(s.id) < LOW]:
                self._blocked.discard(stream)
                stream.wake()
            self.transmit()

    def _received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr != self._peer_seen_as:
            try:
                if _key(addr) != self.peer_key:
                    self.strangers += 1
                    return
            except ValueError:
                self.strangers += 1
                return
            self._peer_seen_as = addr  # the peer's address as the socket spells it: no parsing next time
        if self.ended.done() or (self.conn is None and not self._accept_initial(data)):
            self.ignored += 1
            return
        assert self.conn is not None
        self.conn.receive_datagram(data, addr, now=self.loop.time())

    def _accept_initial(self, data: bytes) -> bool:
        """The server's one connection starts with the peer's first Initial (leftover punch packets do not)."""
        if self.client or len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            return False
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=self.config.connection_id_length)
        except ValueError:
            return False
        if header.packet_type != QuicPacketType.INITIAL or header.version not in self.config.supported_versions:
            return False
        self.conn = PinnedConnection(configuration=self.config, pin=self.pin,
                                     original_destination_connection_id=header.destination_cid)
        return True

    # the connection's events

    def _process(self) -> None:
        assert self.conn is not None
        while (event := self.conn.next_event()) is not None:
            if isinstance(event, events.HandshakeCompleted):
                if not self.conn.verified:  # _PinnedContext already refuses; this is the last line
                    self.close(UNVERIFIED, "peer certificate not verified")
                    return
                self.verified = True
            elif isinstance(event, events.StreamDataReceived):
                if not self.verified:
                    self.close(UNVERIFIED, "stream data before the peer certificate was verified")
                    return
                stream = self.streams.get(event.stream_id) or self._new_stream(event.stream_id)
                if stream is not None:
                    stream.deliver(event.data, event.end_stream)
            elif isinstance(event, events.StreamReset | events.StopSendingReceived):
                if (stream := self.streams.get(event.stream_id)) is not None:
                    stream.fail(event.error_code)
            elif isinstance(event, events.ConnectionTerminated):
                self._finish(self._why(event))
        if self.verified and self.conn.confirmed and not self.ready and not self.ended.done():
            self.ready = True  # both sides verified each other: our streams may go out
            self._cancel_later()
            self._later.append(self.loop.call_later(self.ping_interval, self._ping))
            self.on_ready()

    def _new_stream(self, stream_id: int) -> Stream | None:
        """A stream the peer opened now (not one we already finished with, nor a unidirectional one)."""
        if stream_id % 4 != self._peer_next % 4 or stream_id < self._peer_next or stream_id in self._peer_above:
            return None
        self._peer_above.add(stream_id)
        while self._peer_next in self._peer_above:
            self._peer_above.discard(self._peer_next)
            self._peer_next += 4
        stream = self.streams[stream_id] = Stream(self, stream_id)
        self.on_stream(stream)
        return stream

    def _why(self, event: events.ConnectionTerminated) -> str:
        assert self.conn is not None
        said = event.reason_phrase or f"error {event.error_code:#x}"
        if self.conn.shown is not None:
            return f"peer certificate fingerprint mismatch: expected {self.pin}, got {self.conn.shown}"
        if self._reason is not None:
            return self._reason
        if event.reason_phrase == "Idle timeout" and event.error_code == QuicErrorCode.INTERNAL_ERROR:
            if not self.verified:
                return self._no_handshake_reason()
            return f"the peer stopped answering (idle timeout {self.idle_timeout:g}s)"
        if self.conn.closed_here:
            return f"QUIC error: {said}"
        if event.error_code in _REJECTED_US:
            return f"the peer refused our certificate: {said}"
        return f"closed by the peer: {said}"

    def _finish(self, reason: str) -> None:
        if self.ended.done():
            return
        self.ended.set_result(reason)
        self._cancel_later()
        for stream in list(self.streams.values()):
            stream.fail(GOING_AWAY)
        if self._timer is not None:
            self._timer.cancel()
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()

    def _no_handshake(self) -> None:
        self.close(reason=self._no_handshake_reason())

    def _no_handshake_reason(self) -> str:
        return f"no QUIC handshake with {self.peer[0]}:{self.peer[1]} within {self.idle_timeout:g}s"

    def _ping(self) -> None:
        if self.conn is not None and not self.ended.done():
            self.conn.send_ping(next(self._pings))
            self.transmit()
            self._later.append(self.loop.call_later(self.ping_interval, self._ping))

    def _cancel_later(self) -> None:
        for handle in self._later:
            handle.cancel()
        self._later.clear()

    # sending and timers (as aioquic's QuicConnectionProtocol)

    def transmit_soon(self) -> None:
        if self._transmit_handle is None:
            self._transmit_handle = self.loop.call_soon(self.transmit)

    def transmit(self) -> None:
        self._transmit_handle = None
        if self.conn is None or self._sock is None or self._sock.fileno() < 0:
            return
        for data, addr in self.conn.datagrams_to_send(now=self.loop.time()):
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                self.dropped += 1  # a full socket buffer is a loss to QUIC, as on the path
            except OSError:
                self.errors += 1
        timer_at = self.conn.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None:
            self._timer = self.loop.call_at(timer_at, self._on_timer)
        self._timer_at = timer_at

    def _on_timer(self) -> None:
        assert self.conn is not None and self._timer_at is not None
        now = max(self._timer_at, self.loop.time())
        self._timer = self._timer_at = None
        self.conn.handle_timer(now=now)
        self._process()
        self.transmit()

    # for Stream (plexus.forward.stream.Carrier)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        assert self.conn is not None
        self.conn.send_stream_data(stream_id, data, end_stream=end)
        self.transmit_soon()

    def abort_stream(self, stream_id: int, code: int) -> None:
        if self.conn is None or self.ended.done():
            return
        self.conn.reset_stream(stream_id, code)
        with contextlib.suppress(ValueError):  # the receiving side is already finished and discarded
            self.conn.stop_stream(stream_id, code)
        self.transmit_soon()

    def consume(self, stream_id: int, size: int) -> None:
        if self.conn is not None:
            self.conn.consume(stream_id, size)
            self.transmit_soon()

    def buffered(self, stream_id: int) -> int:
        return self.conn.send_buffered(stream_id) if self.conn is not None else 0

    def block(self, stream: Stream) -> None:
        self._blocked.add(stream)

    def forget(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        self._blocked.discard(stream)
        if self.conn is not None:
            self.conn.forget(stream.id)
