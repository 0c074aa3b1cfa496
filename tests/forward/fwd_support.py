"""Loopback helpers for the forward payload tests: two ForwardSessions in one event loop over real UDP sockets, real
TCP servers as targets, and a UDP relay between the two that a test can cut (a path that dies without a word).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from plexus.errors import LaunchError
from plexus.forward import ForwardSession, Identity

LOOPBACK = "127.0.0.1"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


class Recorder:
    """A report callable that keeps (kind, data) and lets a test wait for one."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))
        self._changed.set()

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [data for k, data in self.events if k == kind]

    async def wait_for(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not self.of(kind):
                self._changed.clear()
                await self._changed.wait()
        return self.of(kind)[0]


class Target:
    """A real TCP server on loopback running ``handler`` per connection; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.accepted = handler, 0
        self.server: asyncio.Server | None = None

    async def start(self) -> Target:
        self.server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


class Relay:
    """A UDP relay: the client talks to ``front``, the server hears everything from ``back``. ``cut()`` drops
    all traffic from then on, as a NAT that lost its mapping."""

    def __init__(self) -> None:
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.front, self.back):
            sock.bind((LOOPBACK, 0))
            sock.setblocking(False)
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] = (LOOPBACK, 0)
        self.open = True
        loop = asyncio.get_running_loop()
        loop.add_reader(self.front.fileno(), self._pass, self.front)
        loop.add_reader(self.back.fileno(), self._pass, self.back)

    def address(self, sock: socket.socket) -> tuple[str, int]:
        return sock.getsockname()[:2]  # type: ignore[no-any-return]

    def _pass(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65536)
            except (BlockingIOError, ConnectionError):
                return
            if not self.open:
                continue
            with contextlib.suppress(OSError):
                if sock is self.front:
                    self.client = addr
                    self.back.sendto(data, self.server)
                elif self.client is not None:
                    self.front.sendto(data, self.client)

    def cut(self) -> None:
        self.open = False

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in (self.front, self.back):
            loop.remove_reader(sock.fileno())
            sock.close()


@dataclass
class Pair:
    client: ForwardSession
    server: ForwardSession
    client_report: Recorder
    server_report: Recorder
    relay: Relay | None = None

    async def connected(self, timeout: float = 5.0) -> None:
        await self.client_report.wait_for("connected", timeout)
        await self.server_report.wait_for("connected", timeout)


class Pairs:
    """Makes session pairs (``await pairs.make(client={...}, server={...})``) and closes them after the test."""

    def __init__(self) -> None:
        self.made: list[Pair] = []
        self.relays: list[Relay] = []
        self.targets: list[Target] = []

    async def target(self, handler: Handler) -> Target:
        """A TCP server running ``handler`` per connection, closed after the test."""
        self.targets.append(await Target(handler).start())
        return self.targets[-1]

    async def make(self, *, client: dict[str, Any] | None = None, server: dict[str, Any] | None = None,
                   relay: bool = False, client_pin: str | None = None, server_pin: str | None = None,
                   start: bool = True) -> Pair:
        ids = Identity.generate(), Identity.generate()
        ports = free_udp_port(), free_udp_port()
        middle = Relay() if relay else None
        client_peer = (LOOPBACK, ports[1]) if middle is None else middle.address(middle.front)
        server_peer = (LOOPBACK, ports[0]) if middle is None else middle.address(middle.back)
        if middle is not None:
            middle.server = (LOOPBACK, ports[1])
            self.relays.append(middle)
        reports = Recorder("client"), Recorder("server")
        common = {"idle_timeout": 5.0, "ping_interval": 1.0}
        sessions = (
            ForwardSession(bind=(LOOPBACK, ports[0]), peer=client_peer, client=True, identity=ids[0],
                           peer_fingerprint=client_pin or ids[1].fingerprint, report=reports[0],
                           **(common | (client or {}))),
            ForwardSession(bind=(LOOPBACK, ports[1]), peer=server_peer, client=False, identity=ids[1],
                           peer_fingerprint=server_pin or ids[0].fingerprint, report=reports[1],
                           **(common | (server or {}))),
        )
        pair = Pair(sessions[0], sessions[1], reports[0], reports[1], middle)
        self.made.append(pair)
        if start:
            await pair.server.start()
            await pair.client.start()
        return pair

    async def close(self) -> None:
        for pair in self.made:
            for session in (pair.client, pair.server):
                with contextlib.suppress(LaunchError):
                    await asyncio.wait_for(session.close(), 5)
        for relay in self.relays:
            relay.close()
        for target in self.targets:
            assert target.server is not None
            target.server.close()
            await target.server.wait_closed()
