"""sd_notify against real AF_UNIX datagram sockets (a path and the abstract namespace): the protocol, the watchdog,
the reporter that turns ``plexus up``'s events into READY/STATUS (fed the exact sequences ``up`` emits), and
``plexus up`` itself as a subprocess under a fake service manager (an acceptor and an initiator on loopback)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service.loopback import World, identities, running_world, spawn, stop, stun_responder

from plexus.events import Event
from plexus.service.notify import Notifier, ServiceReporter, message, notify, socket_address


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identities(tmp_path_factory.mktemp("identities"))


@pytest.fixture(scope="session")
def stun_server() -> Iterator[str]:
    with stun_responder() as address:
        yield address


@pytest.fixture
def loopback_world(tmp_path: Path, keys: Path, stun_server: str) -> Iterator[World]:
    with running_world(tmp_path / "world", keys, stun_server) as world:
        yield world


class Manager:
    """The service manager's end: a bound datagram socket, read at once by a thread (the kernel queues only a
    few datagrams: net.unix.max_dgram_qlen), and the datagrams it got, as field dicts."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.name = "@" + address[1:] if address.startswith("\0") else address
        self.got: list[dict[str, str]] = []
        self._read = 0  # how many of ``got`` receive() has handed out
        self._stop = threading.Event()
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            except OSError:
                return
            assert data.endswith("\n"), data
            self.got.append(dict(line.split("=", 1) for line in data.splitlines()))

    def receive(self, timeout: float = 5.0) -> dict[str, str]:
        """The next datagram (TimeoutError when none comes in time)."""
        deadline = time.monotonic() + timeout
        while len(self.got) <= self._read:
            if time.monotonic() > deadline:
                raise TimeoutError
            time.sleep(0.005)
        self._read += 1
        return self.got[self._read - 1]

    def until(self, key: str, value: str | None = None, timeout: float = 15.0) -> dict[str, str]:
        """Datagrams until one with ``key`` (equal to ``value``, if given); that one."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fields = self.receive(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.got}") from None
            if key in fields and (value is None or fields[key] == value):
                return fields

    def statuses(self) -> list[str]:
        return [fields["STATUS"] for fields in self.got if "STATUS" in fields]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[Manager]:
    """A socket at a path (short: AF_UNIX paths have 108 bytes), named by $NOTIFY_SOCKET."""
    directory = tempfile.mkdtemp(prefix="pxn-", dir="/tmp")
    end = Manager(os.path.join(directory, "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", end.name)
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield end
    finally:
        end.close()
        os.unlink(end.name)
        os.rmdir(directory)


def test_addresses_and_the_datagram() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@plexus/x") == "\0plexus/x"
    assert socket_address("vsock:2:1234") is None and socket_address("@") is None
    assert message({"READY": 1, "STATUS": "two\nlines"}) == b"READY=1\nSTATUS=two lines\n"
    with pytest.raises(ValueError):
        message({"ready": 1})


def test_ready_status_stopping_reach_a_socket_at_a_path(manager: Manager) -> None:
    notifier = Notifier.from_environ()
    assert notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("waiting")
    assert manager.receive() == {"READY": "1", "STATUS": "waiting"}
    assert notifier.status("alice: punch ok (direct)") and notifier.watchdog() and notifier.stopping()
    assert [manager.receive() for _ in range(3)] == [{"STATUS": "alice: punch ok (direct)"}, {"WATCHDOG": "1"},
                                                     {"STOPPING": "1"}]
    assert notify(STATUS="from the function")
    assert manager.receive() == {"STATUS": "from the function"}


def test_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    end = Manager(f"\0plexus-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", end.name)
        assert end.name.startswith("@") and notify(READY=1)
        assert end.receive() == {"READY": "1"}
    finally:
        end.close()


def test_without_a_socket_nothing_is_sent_and_a_dead_one_warns_once(monkeypatch: pytest.MonkeyPatch,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier.from_environ().enabled and not notify(READY=1)
    dead = Notifier("/nonexistent/plexus-notify")
    with caplog.at_level(logging.WARNING, "plexus.service"):
        assert not dead.ready() and not dead.status("x")
    assert len([r for r in caplog.records if "sd_notify" in r.getMessage()]) == 1


def test_the_environment_is_taken_away_from_the_payloads() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid()), "PATH": "/bin"}
    notifier = Notifier.from_environ(env, unset=True)
    assert env == {"PATH": "/bin"} and notifier.watchdog_interval == 2.0
    other = Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # meant for another process
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000"}).watchdog_interval == 0.5


async def test_the_watchdog_task_pings_every_half_timeout(manager: Manager) -> None:
    notifier = Notifier(socket_address(manager.name), watchdog_usec=100_000)
    task = notifier.start_watchdog()
    assert task is not None
    try:
        await asyncio.sleep(0.22)
    finally:
        task.cancel()
    received = []
    while True:
        try:
            received.append(manager.receive(0.05))
        except TimeoutError:
            break
    assert 4 <= len(received) <= 6 and all(fields == {"WATCHDOG": "1"} for fields in received)
    assert Notifier(socket_address(manager.name)).start_watchdog() is None


ACCEPTOR = [  # what `plexus up bob` reports (the profile phase and the last event come from the CLI)
    Event("profile", "start", "bob.yaml"), Event("profile", "ok", "bob: accept alice, carol", duration=0.1),
    Event("rendezvous", "start", "connecting the DHT node"),
    Event("rendezvous", "ok", "DHT node connected", duration=0.1),
    Event("offer-received", "start", "waiting for invites from alice, carol"),
    Event("offer-received", "ok", "invite from alice", "alice", data={"peer_nat": "none"}),
    Event("nat", "start", "asking STUN", "alice"), Event("nat", "ok", "public 127.0.0.1:46827", "alice", 0.01),
    Event("offer-sent", "start", "accept to alice (direct)", "alice"),
    Event("offer-sent", "ok", "accept to alice (direct)", "alice", 0.01),
    Event("punch", "start", "to 127.0.0.1:40782 (direct)", "alice"),
    Event("punch", "ok", "handshake with 127.0.0.1:40782 (direct)", "alice", 0.01, {"path": "direct"}),
    Event("launch", "start", "openvpn", "alice"), Event("launch", "ok", "openvpn pid 7", "alice", 0.01),
    Event("payload", "info", "ready", "alice", data={"pid": 7}),
    Event("offer-received", "ok", "invite from carol", "carol"),
    Event("nat", "fail", "no answer from STUN server 127.0.0.1:3478", "carol", 3.0),
    Event("session", "fail", "no answer from STUN server 127.0.0.1:3478", "carol"),
    Event("session", "stopped", "stopped by SIGTERM (exit 0)", data={"exit_code": 0, "signal": "SIGTERM"}),
]


def test_the_acceptor_is_ready_when_it_waits_and_says_each_session_change(manager: Manager) -> None:
    seen: list[Event] = []
    report = ServiceReporter(seen.append, Notifier.from_environ())
    for event in ACCEPTOR[:2]:
        report(event)
    report.role = "accept"
    for event in ACCEPTOR[2:]:
        report(event)
    assert seen == ACCEPTOR  # passed on, unchanged
    ready = manager.until("READY")
    assert ready == {"READY": "1", "STATUS": "waiting for invites from alice, carol"}
    assert manager.statuses()[:2] == ["profile start: bob.yaml", "profile ok: bob: accept alice, carol"]
    manager.until("STATUS", "stopped: stopped by SIGTERM (exit 0)")
    waiting = "waiting for invites from alice, carol"
    assert manager.statuses()[4:] == [
        waiting, f"{waiting}; alice: offer-received ok", f"{waiting}; alice: nat ok",
        f"{waiting}; alice: offer-sent ok", f"{waiting}; alice: punch ok (direct)",
        f"{waiting}; alice: launch ok", f"{waiting}; alice: payload ready",
        f"{waiting}; alice: payload ready; carol: offer-received ok",
        f"{waiting}; alice: payload ready; carol: nat fail: no answer from STUN server 127.0.0.1:3478",
        f"{waiting}; alice: payload ready; carol: session fail: no answer from STUN server 127.0.0.1:3478",
        "stopped: stopped by SIGTERM (exit 0)"]
    assert sum("READY" in fields for fields in manager.got) == 1


@pytest.mark.parametrize("ready_on_launch", [False, True])
def test_the_initiator_is_ready_when_its_payload_is(manager: Manager, ready_on_launch: bool) -> None:
    report = ServiceReporter(lambda _: None, Notifier.from_environ(), role="initiate",
                             ready_on_launch=ready_on_launch)
    sequence = [Event("offer-received", "ok", "accept from bob", "bob"),
                Event("punch", "ok", "handshake", "bob", 0.01, {"path": "relayed"}),
                Event("launch", "ok", "exec pid 9", "bob", 0.01), Event("payload", "info", "ready", "bob"),
                Event("payload", "ok", "exited with 0", "bob", 2.0, {"exit_code": 0}),
                Event("session", "ok", "ended (exit 0)", data={"exit_code": 0})]
    for event in sequence:
        report(event)
    manager.until("STATUS", "done: ended (exit 0)")
    readies = [i for i, fields in enumerate(manager.got) if "READY" in fields]
    assert readies == [2 if ready_on_launch else 3]
    assert manager.statuses()[:2] == ["bob: offer-received ok", "bob: punch ok (relayed)"]
    assert "bob: payload ok (exited with 0)" in manager.statuses()


def test_plexus_up_notifies_its_service_manager(loopback_world: World, manager: Manager,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An acceptor (with a watchdog) and an initiator, each under its own fake manager."""
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    bob = spawn(loopback_world.profile("bob"))
    try:
        assert manager.until("READY") == {"READY": "1", "STATUS": "waiting for invites from alice"}
        bob.wait_for("offer-received: waiting for invites from alice")
        manager.until("WATCHDOG")
        manager.until("WATCHDOG")  # every 0.2 s
        directory = tempfile.mkdtemp(prefix="pxn-", dir="/tmp")
        alice_manager = Manager(os.path.join(directory, "notify"))
        try:
            alice = spawn(loopback_world.profile("alice"), env={"NOTIFY_SOCKET": alice_manager.name,
                                                                "WATCHDOG_USEC": ""})
            assert alice.finish() == 0, alice.text() + "".join(alice.errors)
            ready = alice_manager.until("READY")
            assert "bob: payload ready" in ready["STATUS"]
            alice_manager.until("STATUS", "done: ended (exit 0)")
            alice_manager.until("STOPPING")
            assert "bob: punch ok (direct)" in alice_manager.statuses()
            assert not any("WATCHDOG" in fields for fields in alice_manager.got)
        finally:
            alice_manager.close()
            os.unlink(alice_manager.name)
            os.rmdir(directory)
        assert alice.wait_for("talker env NOTIFY_SOCKET=None")  # the payload cannot notify in plexus's name
        manager.until("STATUS", "waiting for invites from alice; alice: payload ok (exited with 0)")
    finally:
        assert stop(bob.process) == 0
    assert manager.until("STOPPING") == {"STOPPING": "1", "STATUS": "stopping: SIGTERM"}
    manager.until("STATUS", "stopped: stopped by SIGTERM (exit 0)")
