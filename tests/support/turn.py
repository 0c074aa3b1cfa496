"""TURN relays on loopback for the tests without root: real coturn (``turnserver``), never a mock.

- long-term credentials (``lt-cred-mech``) on ``TURN`` = 127.0.0.1:13590, realm ``plexus.test``, one user with a
  password made per test session, relaying from 127.0.0.1 on ports ``RELAY_PORTS``;
- the TURN REST scheme (``use-auth-secret`` + ``static-auth-secret``) on ``TURN_REST`` = 127.0.0.1:13591,
  relaying on ``REST_RELAY_PORTS``.

Both allow loopback peers (the tests' peers are sockets on 127.0.0.0/8), without TLS, DTLS or the telnet CLI.
The secrets go into 0600 config files (``turnserver -c FILE``), never argv. Live allocations are counted from
coturn's verbose log: ``session <id>: new, ...`` when an allocation is made, ``session <id>: delete: ...``
when it is gone (coturn writes the latter up to ~1 s after a zero-lifetime Refresh, which it logs as
``session <id>: refreshed, ... lifetime=0``): take a count to compare with from ``settled_allocations()``.

``UdpPeer`` (a plain UDP socket on loopback: the far side of a relay) and ``Heard`` (a listener that keeps what
it gets) are what the relay tests send and listen with.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plexus.lab.turn import challenge
from plexus.profile.model import SecretRef, TurnServer

HOST = "127.0.0.1"
REALM = "plexus.test"
USER = "tester"
TURN = (HOST, 13590)
TURN_REST = (HOST, 13591)
PRIVATE = (HOST, 13592)  # a test's own instance (one it may stop)
RELAY_PORTS = (40000, 40999)
REST_RELAY_PORTS = (41000, 41999)
PRIVATE_RELAY_PORTS = (42000, 42099)
_NEW = re.compile(r"session (\d+): new,")
_DELETE = re.compile(r"session (\d+): delete:")
_RELEASED = re.compile(r"session (\d+): refreshed, .*lifetime=0$")


def sessions(log: Path) -> tuple[set[str], set[str]]:
    """The live allocations in a coturn log (sessions with a ``new`` line and no ``delete`` line after it), and
    those of them being deleted (a zero-lifetime Refresh was granted; coturn deletes on its next 1 s tick)."""
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return set(), set()
    live: set[str] = set()
    ending: set[str] = set()
    for line in text.splitlines():
        if made := _NEW.search(line):
            live.add(made.group(1))
        elif gone := _DELETE.search(line):
            live.discard(gone.group(1))
            ending.discard(gone.group(1))
        elif zero := _RELEASED.search(line):
            ending.add(zero.group(1))
    return live, ending & live


def live_allocations(log: Path) -> int:
    return len(sessions(log)[0])


@dataclass
class Coturn:
    """One running coturn: its address, log, relay port range and process (stopped by PID)."""

    label: str
    address: tuple[str, int]
    relay_ports: tuple[int, int]
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def live_allocations(self) -> int:
        return live_allocations(self.log)

    def wait_allocations(self, expected: int, timeout: float = 5.0) -> int:
        """Poll the log until ``expected`` allocations are live or ``timeout`` passes; the last count."""
        deadline = time.monotonic() + timeout
        while (count := self.live_allocations()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return count

    def settled_allocations(self, timeout: float = 3.0) -> int:
        """The live allocations once every released one is deleted (waiting up to ``timeout`` s for that): a
        count to compare with later."""
        deadline = time.monotonic() + timeout
        while True:
            live, ending = sessions(self.log)
            if not ending or time.monotonic() > deadline:
                return len(live)
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(3)


def _write_private(path: Path, lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def _port_free(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(address)
        except OSError:
            return False
    return True


def start_coturn(directory: Path, label: str, address: tuple[str, int], relay_ports: tuple[int, int],
                 auth: list[str], *, timeout: float = 5.0) -> Coturn:
    """Start coturn with ``auth`` (its credential lines) in ``directory`` and wait until an unauthenticated
    Allocate is answered with 401; fails the test (never skips) when it cannot."""
    if shutil.which("turnserver") is None:
        pytest.fail("turnserver not found: apt-get install coturn", pytrace=False)
    if not _port_free(address):  # coturn binds with SO_REUSEPORT: a second one would share the port silently
        pytest.fail(f"UDP {address[0]}:{address[1]} is in use (another test session's coturn?); the TURN "
                    "fixture needs it", pytrace=False)
    log = directory / f"{label}.log"
    config = directory / f"{label}.conf"
    _write_private(config, [
        f"listening-ip={address[0]}", f"listening-port={address[1]}", f"relay-ip={address[0]}",
        f"min-port={relay_ports[0]}", f"max-port={relay_ports[1]}", f"realm={REALM}", *auth,
        "allow-loopback-peers", "no-multicast-peers", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
        "verbose", "simple-log", f"log-file={log}", f"pidfile={directory / f'{label}.pid'}",
        f"userdb={directory / f'{label}.sqlite'}"])
    with (directory / f"{label}.out").open("wb") as out:
        process = subprocess.Popen(["turnserver", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    server = Coturn(label, address, relay_ports, log, process)
    deadline = time.monotonic() + timeout
    while challenge(address) != 401:
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            pytest.fail(f"coturn ({label}) did not answer an Allocate with 401 on {address[0]}:{address[1]} "
                        f"within {timeout:g} s (exit {process.poll()}); log {log}:\n{tail}", pytrace=False)
        time.sleep(0.05)
    return server


def start_long_term(directory: Path, label: str, address: tuple[str, int], relay_ports: tuple[int, int],
                    password: str) -> Coturn:
    return start_coturn(directory, label, address, relay_ports, ["lt-cred-mech", f"user={USER}:{password}"])


def long_term_server(address: tuple[str, int], password: str, username: str = USER) -> TurnServer:
    """A ``TurnServer`` (UDP, long-term credentials, the password inline) for ``address``."""
    host, port = address
    return TurnServer(f"turn:{host}:{port}", host, port, username=username, password=SecretRef("inline", password))


@dataclass
class TurnServers:
    """The session's two coturn instances and their credentials."""

    long_term: Coturn
    rest: Coturn
    username: str
    password: str = field(repr=False)
    secret: str = field(repr=False)

    @property
    def address(self) -> tuple[str, int]:
        return self.long_term.address

    @property
    def rest_address(self) -> tuple[str, int]:
        return self.rest.address

    @property
    def log(self) -> Path:
        return self.long_term.log

    @property
    def rest_log(self) -> Path:
        return self.rest.log

    def live_allocations(self, *, rest: bool = False) -> int:
        return (self.rest if rest else self.long_term).live_allocations()

    def wait_allocations(self, expected: int, *, rest: bool = False, timeout: float = 5.0) -> int:
        return (self.rest if rest else self.long_term).wait_allocations(expected, timeout)

    def settled_allocations(self, *, rest: bool = False) -> int:
        return (self.rest if rest else self.long_term).settled_allocations()

    def server(self, password: str | None = None, *, username: str | None = None) -> TurnServer:
        """A ``TurnServer`` for the long-term instance (our password unless another is given)."""
        return long_term_server(self.address, self.password if password is None else password,
                                username or self.username)

    def rest_server(self, secret: str | None = None) -> TurnServer:
        """A ``TurnServer`` for the REST instance (our shared secret unless another is given)."""
        host, port = self.rest_address
        return TurnServer(f"turn:{host}:{port}", host, port,
                          secret=SecretRef("inline", self.secret if secret is None else secret))

    def stop(self) -> None:
        self.long_term.stop()
        self.rest.stop()


def start(directory: Path) -> TurnServers:
    password, secret = secrets.token_urlsafe(18), secrets.token_urlsafe(24)
    long_term = start_long_term(directory, "turn", TURN, RELAY_PORTS, password)
    try:
        rest = start_coturn(directory, "turn-rest", TURN_REST, REST_RELAY_PORTS,
                            ["use-auth-secret", f"static-auth-secret={secret}"])
    except BaseException:
        long_term.stop()
        raise
    return TurnServers(long_term, rest, USER, password, secret)


# -- the far side of a relay, and a listener that keeps what it hears --------------------------------------------

Address = tuple[str, int]


class UdpPeer:
    """A plain (non-blocking) UDP socket on loopback, used from a test's event loop."""

    def __init__(self, host: str = HOST, port: int = 0) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind((host, port))
        self.socket.setblocking(False)

    @property
    def address(self) -> Address:
        name = self.socket.getsockname()
        return (name[0], name[1])

    def send(self, data: bytes, addr: Address) -> None:
        self.socket.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, Address]:
        """The next datagram and its sender; fails the test when none comes within ``timeout`` s."""
        loop = asyncio.get_running_loop()
        try:
            data, addr = await asyncio.wait_for(loop.sock_recvfrom(self.socket, 65535), timeout)
        except TimeoutError:
            pytest.fail(f"nothing reached {self.address} within {timeout:g} s", pytrace=False)
        return data, (addr[0], addr[1])

    async def silent(self, wait: float = 0.3) -> bool:
        """True when nothing arrives for ``wait`` s."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_recvfrom(self.socket, 65535), wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> UdpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Heard:
    """A listener (``port.add_listener(heard)``) that takes every datagram and queues it with its sender."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Address]] = asyncio.Queue()

    def __call__(self, data: bytes, addr: Address) -> bool:
        self.queue.put_nowait((data, addr))
        return True

    async def next(self, timeout: float = 2.0) -> tuple[bytes, Address]:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            pytest.fail(f"the listener heard nothing within {timeout:g} s", pytrace=False)

    async def silent(self, wait: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return True
        return False
