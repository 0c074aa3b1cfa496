"""One bound UDP port shared by the stages: STUN asks through it, the punch reuses it, and the payload then
binds the same local port once it is closed, so the public mapping STUN found is the one used.

Incoming datagrams go to listeners in order; the first that returns True consumes the datagram. Datagrams
nobody wants are counted and dropped.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol

from plexus.profile.model import Endpoint

Address = tuple[str, int]
Listener = Callable[[bytes, Address], bool]


class DatagramPort(Protocol):
    """What the punch needs of a port: a ``UdpPort``, or a TURN allocation (``plexus.relay.Allocation``)."""

    def add_listener(self, listener: Listener) -> None: ...

    def remove_listener(self, listener: Listener) -> None: ...

    def sendto(self, data: bytes, addr: Address, ttl: int | None = None) -> None: ...


class ListenerPort:
    """Datagram listeners in order: the first that returns True consumes a datagram; the rest are counted in
    ``unclaimed``. Shared by ``UdpPort`` and the relay's ``Allocation``, the two ports the punch sends through."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.unclaimed = 0  # datagrams no listener wanted

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _dispatch(self, data: bytes, addr: Address) -> None:
        for listener in list(self._listeners):
            try:
                if listener(data, addr):
                    return
            except Exception:  # a listener must never break the port; treat as "not mine"
                continue
        self.unclaimed += 1


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, port: UdpPort) -> None:
        self._port = port

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._port._dispatch(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, TTL exceeded) surface here on Linux; they are expected while punching.
        self._port.errors += 1


class UdpPort(ListenerPort):
    """A bound UDP socket with datagram listeners. Create with ``await UdpPort.bind(endpoint)``."""

    def __init__(self) -> None:
        super().__init__()
        self._transport: asyncio.DatagramTransport | None = None
        self._socket: socket.socket | None = None  # the raw socket (asyncio only exposes a restricted wrapper)
        self.errors = 0  # ICMP errors reported by the kernel

    @classmethod
    async def bind(cls, endpoint: Endpoint | None = None) -> UdpPort:
        endpoint = endpoint or Endpoint("0.0.0.0", 0)
        port = cls()
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((endpoint.host, endpoint.port))
        except OSError as error:
            sock.close()
            from plexus.errors import NatError

            raise NatError(f"cannot bind UDP {endpoint}: {error.strerror}",
                           hint="choose another stun.bind port or free this one") from error
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(port), sock=sock)
        port._transport, port._socket = transport, sock
        return port

    @property
    def local(self) -> Address:
        """Our inner endpoint (the bound address and port)."""
        name = self._sock().getsockname()
        return (name[0], name[1])

    def _sock(self) -> socket.socket:
        if self._transport is None or self._socket is None:
            raise RuntimeError("UDP port is closed")
        return self._socket

    @property
    def closed(self) -> bool:
        return self._transport is None

    def sendto(self, data: bytes, addr: Address, ttl: int | None = None) -> None:
        """Send one datagram; with ``ttl`` this datagram alone leaves with that IP TTL (hop limit)."""
        if self._transport is None:
            raise RuntimeError("UDP port is closed")
        if ttl is None:
            self._transport.sendto(data, addr)
            return
        sock = self._sock()
        v6 = sock.family == socket.AF_INET6
        level, option = (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) if v6 else (socket.IPPROTO_IP,
                                                                                     socket.IP_TTL)
        previous = sock.getsockopt(level, option)
        sock.setsockopt(level, option, ttl)
        try:
            # Send directly: the transport may buffer, and the TTL must apply to this very datagram.
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                pass  # a full socket buffer drops an opening packet; the next one goes
            except OSError:
                self.errors += 1
        finally:
            sock.setsockopt(level, option, previous)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()  # stops reading now; the fd itself would close on the next loop turn
            if self._socket is not None:
                self._socket.close()  # close it now: the payload binds this very port next
            self._transport = self._socket = None

    async def __aenter__(self) -> UdpPort:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
