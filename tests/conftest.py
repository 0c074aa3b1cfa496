"""Shared fixtures. The network lab (``plexus.lab``) is built once per test session for tests that ask for it.

    @pytest.mark.lab
    def test_something(lab, site_run, site_spawn, lab_settings):
        lab_settings.set_nat("a", "eim-bare")             # restored after the test
        bob = site_spawn("b", ["plexus", "up", "alice"])   # stopped by PID after the test
        done = site_run("a", ["plexus", "up", "bob"], timeout=60)
        assert bob.wait_for("tunnel up", timeout=10)

The lab is named ``plexus-test`` unless PLEXUS_LAB_NAME is set (set it to run two sessions at once). A test
that needs the lab and cannot have it (not root, a Debian package missing) fails with the reason; it is never
skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLES
from support.stun import OTHER, PRIMARY

from plexus.errors import PlexusError
from plexus.nat import message

LAB_NAME = os.environ.get("PLEXUS_LAB_NAME") or "plexus-test"





@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of the example profiles (with their certificates) to break on purpose."""
    target = tmp_path / "examples"
    shutil.copytree(EXAMPLES, target)
    for key in target.glob("certs/*.key"):  # git checks files out 0644; a private key wants 0600
        key.chmod(0o600)
    return target


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own plexus state folder (the replay memory), so tests never see each other's offers;
    lab sites have their own (``Lab.env``)."""
    monkeypatch.setenv("PLEXUS_STATE_DIR", str(tmp_path / "state"))


ROOT_FIXTURES = {"lab", "pair"}  # the network lab; a pair of network namespaces (tests/support/netns.py)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # a test that needs root (namespaces) is a lab test, marked or not
        if ROOT_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab() -> Iterator[Any]:
    """The session's network lab (a ``plexus.lab.Lab``), built fresh and removed at the end."""
    from plexus.lab import Lab

    with _session_lock(LAB_NAME):
        try:
            instance = Lab.up(LAB_NAME, force=True)
        except PlexusError as error:
            pytest.fail(f"the network lab is needed and could not be built: {error}", pytrace=False)
        try:
            yield instance
        finally:
            instance.down()


@contextlib.contextmanager
def _session_lock(name: str, wait: float = 600.0) -> Iterator[None]:
    """One test session per lab name at a time: another session using the same name waits (bounded) instead
    of rebuilding the lab under the first one's feet. Set PLEXUS_LAB_NAME to run sessions side by side."""
    if os.geteuid() != 0:
        yield  # Lab.up will fail with the reason
        return
    path = Path("/run/lock") / f"plexus-lab-{name}.lock"
    with path.open("a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"lab {name!r} stayed in use by another test session for {wait:g} s "
                                "(set PLEXUS_LAB_NAME to a name of your own)", pytrace=False)
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def site_run(lab: Any) -> Any:
    """``site_run(site, argv, timeout=30, env=None, input=None, check=False) -> CompletedProcess[str]``: run a
    command to its end in site a/b/c/srv with the site's environment (profiles, mail password, CA)."""

    def run(site: str, argv: Sequence[str], *, timeout: float = 30.0, env: Mapping[str, str] | None = None,
            input: str | None = None, check: bool = False, user: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        try:
            return lab.run(site, argv, timeout=timeout, env=env, input=input,  # type: ignore[no-any-return]
                           check=check, user=user)
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"{' '.join(argv)} in site {site} did not finish within {timeout} s; output: "
                        f"{_text(error.stdout)}{_text(error.stderr)}", pytrace=False)

    return run


def _text(data: bytes | str | None) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


class SpawnedProcess:
    """A background process in a lab site; stdout and stderr go (merged) to a file you can read any time."""

    def __init__(self, lab: Any, site: str, argv: Sequence[str], log: Path,
                 env: Mapping[str, str] | None, user: str | None = None) -> None:
        self.lab, self.site, self.argv, self.log = lab, site, list(argv), log
        self._file = log.open("w")
        self.process: subprocess.Popen[Any] = lab.spawn(site, argv, env=env, stdout=self._file,
                                                        stderr=subprocess.STDOUT, user=user)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[str]:
        return self.output().splitlines()

    def wait_for(self, text: str, *, timeout: float = 10.0) -> str:
        """The first output line containing ``text``, waiting up to ``timeout`` s; fails the test with the
        output so far if it does not come (or the process ends without it)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines():
                if text in line:
                    return line
            if time.monotonic() > deadline or self.process.poll() is not None:
                if self.process.poll() is not None:  # it may have printed the line just before exiting
                    for line in self.lines():
                        if text in line:
                            return line
                pytest.fail(f"{' '.join(self.argv)} in site {self.site}: no {text!r} within {timeout} s "
                            f"(exit {self.process.poll()}); output:\n{self.output()[-3000:]}", pytrace=False)
            time.sleep(0.02)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the process to end; fails the test if it does not end in time."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(self.argv)} in site {self.site} still runs after {timeout} s; output:\n"
                        f"{self.output()[-3000:]}", pytrace=False)

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL) the process and its children, by PID."""
        if self.process.poll() is None:
            self.lab.stop(self.process)
        self._file.close()
        return self.process.poll()


@pytest.fixture
def site_spawn(lab: Any, tmp_path: Path) -> Iterator[Any]:
    """``site_spawn(site, argv, env=None) -> SpawnedProcess``: start a background process in a site; it is
    stopped by PID after the test. ``.wait_for(text)``, ``.output()``, ``.lines()``, ``.wait()``, ``.stop()``."""
    started: list[SpawnedProcess] = []

    def spawn(site: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              user: str | None = None) -> SpawnedProcess:
        process = SpawnedProcess(lab, site, argv, tmp_path / f"spawn-{len(started)}-{site}.log", env, user)
        started.append(process)
        return process

    yield spawn
    for process in reversed(started):
        process.stop()


class LabSettings:
    """Runtime changes to the lab (NAT kind per site, netem) that are undone after the test."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self._nat: dict[str, str] = {}
        self._netem: dict[str, float] | None = None

    def set_nat(self, site: str, kind: str) -> None:
        self._nat.setdefault(site, self.lab.nat(site))
        self.lab.set_nat(site, kind)

    def set_netem(self, loss_pct: float = 0.0, delay_ms: float = 0.0) -> None:
        if self._netem is None:
            self._netem = dict(self.lab.config["netem"])
        self.lab.set_netem(loss_pct, delay_ms)

    def restore(self) -> None:
        for site, kind in self._nat.items():
            self.lab.set_nat(site, kind)
        if self._netem is not None:
            self.lab.set_netem(self._netem["loss_pct"], self._netem["delay_ms"])


@pytest.fixture
def lab_settings(lab: Any) -> Iterator[LabSettings]:
    """``lab_settings.set_nat(site, kind)`` / ``lab_settings.set_netem(loss_pct, delay_ms)`` for one test;
    the previous NAT kinds and netem come back afterwards."""
    settings = LabSettings(lab)
    try:
        yield settings
    finally:
        settings.restore()


# -- a STUN server on loopback (tests without root) ----------------------------------------------------



def _answers(server: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(0.1)
        probe.sendto(bytes(message.binding_request()), server)
        try:
            return bool(probe.recv(2048))
        except OSError:
            return False


@pytest.fixture(scope="session")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real RFC 5780 STUN server (coturn) on loopback: 127.0.0.1:13578, alternate 127.0.0.2:13579 (no root)."""
    if shutil.which("turnserver") is None:
        pytest.fail("turnserver not found: apt-get install coturn")
    state = tmp_path_factory.mktemp("coturn")
    argv = ["turnserver", "-n", "-S", "--no-cli", "--no-tls", "--no-dtls", "-L", PRIMARY[0], "-L", OTHER[0],
            "-p", str(PRIMARY[1]), "--alt-listening-port", str(OTHER[1]), "--no-auth", "--simple-log",
            "--log-file", str(state / "turn.log"), "--pidfile", str(state / "turn.pid"),
            "--userdb", str(state / "turndb.sqlite")]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not (_answers(PRIMARY) and _answers(OTHER)):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"coturn did not answer on {PRIMARY} and {OTHER}; see {state / 'turn.log'}")
            time.sleep(0.05)
        yield PRIMARY
    finally:
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(3)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(3)


# -- TURN relays on loopback (tests without root) -------------------------------------------------------


@pytest.fixture(scope="session")
def turn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Real coturn TURN relays on loopback (``support.turn.TurnServers``): long-term credentials on
    127.0.0.1:13590 and the TURN REST shared-secret scheme on 127.0.0.1:13591, both relaying to loopback peers.
    ``.server()`` / ``.rest_server()`` give ``TurnServer``s, ``.live_allocations()`` counts from the log."""
    from support import turn

    servers = turn.start(tmp_path_factory.mktemp("turn"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def reachable() -> Iterator[None]:
    """A normal user (the lab's ``plexus-lab``) can reach this Python and plexus during the test."""
    from support.reach import reachable as reach

    with reach():
        yield
