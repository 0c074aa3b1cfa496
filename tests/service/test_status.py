"""``plexus status``: a running acceptor and initiator (real subprocesses on loopback, without root: a DHT
bootstrap node and a STUN responder) answer on their 0600 sockets with the live session: phase, path, both
endpoints, the payload's pid and state; with nothing running, one line and exit 1."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from service.loopback import PLEXUS, World, identities, running_world, spawn, stop, stun_responder


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identities(tmp_path_factory.mktemp("status-keys"))


@pytest.fixture
def world(tmp_path: Path, keys: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # this test's own run directory
    (tmp_path / "run").mkdir(mode=0o700)
    with stun_responder() as stun, running_world(tmp_path / "world", keys, stun) as found:
        yield found


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PLEXUS, "status", *args], capture_output=True, text=True, timeout=20,
                          env=dict(os.environ))


def test_a_live_session_shows_its_endpoints_path_and_payload(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_HOLD", "20")  # alice's payload holds: the session stays live
    bob = spawn(world.profile("bob"))
    try:
        bob.wait_for("waiting for invites from alice")
        alice = spawn(world.profile("alice"))
        try:
            alice.wait_for("talker ready")
            done = status("alice", "--json")
            assert done.returncode == 0, done.stderr
            snapshot = json.loads(done.stdout)
            assert snapshot["profile"] == "alice" and snapshot["role"] == "initiate"
            (peer,) = snapshot["peers"]
            assert peer["peer"] == "bob" and peer["path"] == "direct"
            assert peer["local"].startswith("127.0.0.1:") and peer["peer_endpoint"].startswith("127.0.0.1:")
            assert peer["payload"]["state"] == "ready" and isinstance(peer["payload"]["pid"], int)
            assert peer["last_error"] is None
            bob_side = json.loads(status("bob", "--json").stdout)
            assert bob_side["state"] == "waiting for invites from alice"
            assert bob_side["peers"][0]["peer"] == "alice" and bob_side["peers"][0]["path"] == "direct"
            every = status()
            assert every.returncode == 0 and "peer bob: payload" in every.stdout and "path direct" in every.stdout
            sock = Path(os.environ["XDG_RUNTIME_DIR"]) / "plexus" / "status" / "alice.sock"
            assert stat.S_IMODE(sock.stat().st_mode) == 0o600
            assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        finally:
            stop(alice.process)
    finally:
        stop(bob.process)
    assert not (Path(os.environ["XDG_RUNTIME_DIR"]) / "plexus" / "status" / "bob.sock").exists()


def test_nothing_running_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    done = status("--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no running plexus" in done.stderr
    assert sys.executable  # the CLI ran under this interpreter
