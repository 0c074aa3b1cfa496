"""TCP listeners that outlive a forward session, so a restart on a new socket keeps the local ports.

A ``Listeners`` holds the ``-L`` and ``-D`` listeners of our side and the ``-R`` listeners we opened for the peer.
A session attaches itself once its QUIC connection is verified and detaches when it ends; a connection accepted
while no session is attached waits up to ``hold`` seconds for the next one, then is reset. ``listen`` is
idempotent per (kind, bind address): a new session adopts what is open and binds only what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, Protocol

from plexus.errors import LaunchError
from plexus.forward.spec import Target

Kind = Literal["L", "D", "R"]  # our -L, our -D, a -R the peer asked for


@dataclass(frozen=True)
class Entry:
    """One listener: what accepting there means. ``target`` is None for SOCKS (the client names it)."""

    kind: Kind
    bind: Target
    target: Target | None
    label: str  # as reports and stats name it


class Dispatcher(Protocol):
    def handle(self, entry: Entry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]: ...


def reset(writer: asyncio.StreamWriter) -> None:
    """Close a TCP connection with RST (SO_LINGER 0), the way a dead path must look: not a clean end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Listeners:
    def __init__(self, *, hold: float = 5.0) -> None:
        self.hold = hold
        self._entries: dict[tuple[Kind, Target], Entry] = {}
        self._servers: dict[tuple[Kind, Target], asyncio.Server] = {}
        self._session: Dispatcher | None = None
        self._attached = asyncio.Event()
        self.held = self.turned_away = 0  # connections that waited for a session; that found none in time

    async def listen(self, entry: Entry) -> tuple[Target, bool]:
        """Bind ``entry.bind`` unless open already (then take the new entry); returns the address and whether it
        was bound now. LaunchError if it cannot be bound."""
        key = (entry.kind, entry.bind)
        self._entries[key] = entry
        if self._session is None:
            self._attached.clear()  # open again after a close()
        if key in self._servers:
            return self.address(entry.kind, entry.bind), False
        try:
            server = await asyncio.start_server(lambda r, w: self._accepted(key, r, w), entry.bind.host,
                                                entry.bind.port, reuse_address=True)
        except OSError as error:
            del self._entries[key]
            raise LaunchError(f"forward: cannot listen on TCP {entry.bind} for {entry.label}: "
                              f"{error.strerror or error}") from error
        self._servers[key] = server
        return self.address(entry.kind, entry.bind), True

    def address(self, kind: Kind, bind: Target) -> Target:
        """Where the listener for ``bind`` is bound (the real port when ``bind`` asked for port 0)."""
        name = self._servers[(kind, bind)].sockets[0].getsockname()
        return Target(name[0], name[1])

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def attach(self, session: Dispatcher) -> None:
        self._session = session
        self._attached.set()

    def detach(self, session: Dispatcher) -> None:
        if self._session is session:
            self._session = None
            self._attached.clear()

    async def close(self) -> None:
        """Stop listening; connections still waiting for a session are reset now."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        self._entries.clear()
        self._session = None
        self._attached.set()  # wakes the waiting ones: they find no session and no entry

    async def _accepted(self, key: tuple[Kind, Target], reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        if self._session is None:
            self.held += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attached.wait(), self.hold)
        entry, session = self._entries.get(key), self._session
        if entry is None or session is None:
            self.turned_away += 1
            reset(writer)
            return
        await session.handle(entry, reader, writer)
