"""A world on loopback for ``plexus up`` run as a subprocess, without root (no test here): a STUN responder (a
thread), an OpenDHT bootstrap node (a child process), S/MIME identities, and DHT profiles for an acceptor (bob)
and an initiator (alice) whose payload, ``talker``, prints a long line, says it is ready, holds and exits.

Used by tests/cli/test_output.py and tests/service/test_notify.py (``from service.loopback import ...``), whose
fixtures are ``identities`` (once per session), ``stun_responder`` and ``running_world``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aioice import stun

from plexus.rendezvous.dht.identity import IdentityFiles, generate

PLEXUS = [sys.executable, "-m", "plexus"]
LOOPBACK = "127.0.0.1"
LONG_LINE = "talker says: " + " ".join(f"word{i:03d}" for i in range(60))  # 493 characters, no wrapping wanted
# A plain line: TIMESTAMP LEVEL [peer] phase: message (or a payload's line: TIMESTAMP LEVEL talker[peer] text)
PLAIN = re.compile(r"^(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<level>INFO|WARN|ERROR) (?P<text>.+)$")

TALKER = """#!{python}
import os, sys, time
print({long!r}, flush=True)
print("talker ready", flush=True)
print("talker env NOTIFY_SOCKET=" + str(os.environ.get("NOTIFY_SOCKET")), flush=True)
time.sleep(float(os.environ.get("PLEXUS_TEST_HOLD", "0")))
print("talker done", flush=True)
sys.exit(int(os.environ.get("PLEXUS_TEST_EXIT", "0")))
"""
TEMPLATE = """description: "A test payload: a long line, then ready, a hold, done"
needs: [command]
vars: {command: path}
argv: ["{{ vars.command }}", "{{ peer.ip }}"]
ready: "^talker ready$"
ready_timeout: 10s
"""
PROFILE = """version: 1
host: {{id: {me}, address: {me}@plexus.test}}
role: {role}
peers:
  - id: {peer}
    address: {peer}@plexus.test
    certificate: {keys}/{peer}/identity.crt
rendezvous:
  authentication: smime
  smime: {{certificate: {keys}/{me}/identity.crt, key: {keys}/{me}/identity.key}}
  timeout: 10s
  dht: {{bootstrap: ["{bootstrap}"], keys: {keys}/{me}, app: plexus-test}}
stun:
  servers: ["{stun}"]
  bind: "127.0.0.1:0"
  timeout: {stun_timeout}
punch: {{timeout: 5s, interval: 20ms}}
payload:
  template: talker
  vars: {{command: {talker}}}
"""


class StunResponder:
    """Answers every STUN binding request on loopback with the sender's own address (a host without NAT)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.1)
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stun-responder", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(2048)
                request = stun.parse_message(data)
            except (TimeoutError, ValueError):
                continue
            except OSError:
                return
            reply = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
            reply.attributes["XOR-MAPPED-ADDRESS"] = sender
            with contextlib.suppress(OSError):
                self.sock.sendto(bytes(reply), sender)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


BOOTSTRAP = """
import asyncio, signal, sys
from plexus.rendezvous.dht.node import DhtNode

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with DhtNode(port=int(sys.argv[1]), bind="127.0.0.1", bootstrap_mode=True):
        print("ready", flush=True)
        await stop.wait()

asyncio.run(main())
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def bootstrap_node() -> Iterator[str]:
    """An OpenDHT bootstrap node on loopback (a child process, stopped by its PID): its ``HOST:PORT``."""
    port = free_udp_port()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(port)], stdout=subprocess.PIPE,
                                   stderr=errors, text=True)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            if first.strip() != "ready":
                errors.seek(0)
                raise AssertionError(f"the DHT bootstrap node did not start: {first}{errors.read()}")
            yield f"{LOOPBACK}:{port}"
        finally:
            stop(process)


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """Signal a child by its PID, SIGKILL it if it does not end in time; its exit code."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


def identities(directory: Path) -> Path:
    """S/MIME identities for alice and bob in ``directory/<id>/`` (RSA keys take a moment: make them once)."""
    for host in ("alice", "bob"):
        files = IdentityFiles(directory / host / "identity.crt", directory / host / "identity.key")
        if not files.certificate.exists():
            generate(files, host, f"{host}@plexus.test")
    return directory


@dataclass
class World:
    """Profiles ``alice`` (initiate) and ``bob`` (accept) in ``directory``, and what they run against."""

    directory: Path
    bootstrap: str
    stun: str

    def profile(self, me: str, *, stun: str | None = None, stun_timeout: str = "2s") -> Path:
        peer, role = ("bob", "initiate") if me == "alice" else ("alice", "accept")
        path = self.directory / f"{me}.yaml"
        path.write_text(PROFILE.format(me=me, peer=peer, role=role, keys=self.directory / "keys",
                                       bootstrap=self.bootstrap, stun=stun or self.stun, stun_timeout=stun_timeout,
                                       talker=self.directory / "talker.py"))
        return path


@contextlib.contextmanager
def stun_responder() -> Iterator[str]:
    """A ``StunResponder`` while the block runs: its ``HOST:PORT``."""
    responder = StunResponder()
    try:
        yield responder.address
    finally:
        responder.close()


@contextlib.contextmanager
def running_world(directory: Path, keys: Path, stun: str) -> Iterator[World]:
    """alice's and bob's profiles in ``directory`` against a fresh DHT bootstrap node (so that the offers of
    another test stay out of this one), the identities in ``keys``, STUN at ``stun``."""
    with bootstrap_node() as bootstrap:
        yield world(directory, keys, bootstrap, stun)


def world(directory: Path, keys: Path, bootstrap: str, stun: str) -> World:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").symlink_to(keys)
    talker = directory / "talker.py"
    talker.write_text(TALKER.format(python=sys.executable, long=LONG_LINE))
    talker.chmod(stat.S_IRWXU)
    (directory / "templates" / "talker").mkdir(parents=True)
    (directory / "templates" / "talker" / "template.yaml").write_text(TEMPLATE)
    return World(directory, bootstrap, stun)


@dataclass
class Line:
    text: str
    arrived: float  # time.time() when we read it
    running: bool  # the process had not exited when we read it


@dataclass
class Output:
    """A child's stdout read line by line as it comes, in a thread: each line with its arrival time."""

    process: subprocess.Popen[str]
    lines: list[Line] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # stderr, read beside
    _thread: threading.Thread | None = None

    def start(self) -> Output:
        assert self.process.stdout is not None and self.process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._thread.start()
        threading.Thread(target=self.errors.extend, args=(self.process.stderr,), daemon=True).start()
        return self

    def _read(self, stream: IO[str]) -> None:
        for text in stream:
            self.lines.append(Line(text, time.time(), self.process.poll() is None))

    def wait_for(self, fragment: str, timeout: float = 15.0) -> Line:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if fragment in line.text:
                    return line
            if self.process.poll() is not None and self._thread is not None and not self._thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {fragment!r} in the output (exit {self.process.poll()}):\n{self.text()}"
                             f"{''.join(self.errors)}")

    def finish(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        if self._thread is not None:
            self._thread.join(5)
        return code

    def text(self) -> str:
        return "".join(line.text for line in self.lines)


def spawn(profile: Path, *extra: str, env: Mapping[str, str] | None = None) -> Output:
    """``plexus up PROFILE EXTRA...`` with stdout a pipe (read as it comes) and stderr to a pipe of its own."""
    environment = {**os.environ, **(env or {})}
    process = subprocess.Popen([*PLEXUS, "up", str(profile), *extra], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment, cwd=profile.parent)
    return Output(process).start()
