"""``plexus up`` as a subprocess with stdout a pipe, as under systemd or a script: one plain line per event as it
happens (no ANSI, no wrapping, the error on its own line), the payload's lines whole with the same prefix; and
with --json, the last event always says why plexus exits. Real runs on loopback, no root: a DHT bootstrap node,
a STUN responder, two plexus processes and a real payload (tests/service/loopback.py)."""

from __future__ import annotations

import datetime
import io
import json
import logging
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service.loopback import (
    LONG_LINE,
    PLAIN,
    Output,
    World,
    free_udp_port,
    identities,
    running_world,
    spawn,
    stop,
    stun_responder,
)

from plexus.cli.ui import PlainLines
from plexus.events import Event


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


MISSING_SECRET = """version: 1
host: {id: alice, address: alice@example.org}
role: initiate
peers:
  - {id: bob, address: bob@example.org}
rendezvous:
  authentication: psk
  psk: {env: PLEXUS_TEST_NOT_SET}
  email:
    smtp: {host: 127.0.0.1, port: 1, tls: starttls}
    imap: {host: 127.0.0.1, port: 1, tls: starttls}
    password: {env: PLEXUS_TEST_NOT_SET}
stun: {servers: ["127.0.0.1:1"]}
payload: {template: exec, vars: {command: "true"}}
"""


def stamp_of(text: str) -> float:
    match = PLAIN.match(text)
    assert match, f"not a plain line: {text!r}"
    return datetime.datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S.%f").timestamp()


def check_plain(output: Output) -> list[str]:
    """Every stdout line: one complete plain line, no escape sequence, read within a second of its own stamp.
    The texts after the stamp."""
    texts = []
    for line in output.lines:
        assert line.text.endswith("\n") and "\x1b" not in line.text and "\r" not in line.text, repr(line.text)
        assert line.arrived - stamp_of(line.text) < 1.0, f"{line.text!r} arrived {line.arrived:.3f}"
        texts.append(line.text.rstrip("\n").split(" ", 2)[2])
    return texts


def json_events(output: Output) -> list[dict[str, Any]]:
    return [json.loads(line.text) for line in output.lines]


@pytest.fixture
def missing_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PLEXUS_TEST_NOT_SET", raising=False)
    path = tmp_path / "alice.yaml"
    path.write_text(MISSING_SECRET)
    return path


def test_a_run_that_fails_fast_says_why_on_a_line_of_its_own(missing_secret: Path) -> None:
    run = spawn(missing_secret)
    assert run.finish() == 2, run.text() + "".join(run.errors)
    texts = check_plain(run)
    assert texts[0] == f"INFO profile: {missing_secret}"
    assert texts[1].startswith("INFO profile: alice: initiate bob (")
    assert texts[-1].startswith("ERROR session: secret: environment variable PLEXUS_TEST_NOT_SET is not set")
    assert texts[-1].endswith("(exit 2)") and len(texts) == 3
    assert run.errors == [f"plexus: {texts[-1].split(': ', 1)[1].removesuffix(' (exit 2)')}\n"]


def test_a_session_prints_each_line_as_it_happens(loopback_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_HOLD", "1.5")  # the payload holds: every line before must be out by then
    bob = spawn(loopback_world.profile("bob"))
    try:
        bob.wait_for("INFO offer-received: waiting for invites from alice")
        alice = spawn(loopback_world.profile("alice"))
        assert alice.finish() == 0, alice.text() + "".join(alice.errors)
    finally:
        stop(bob.process)
    texts = check_plain(alice)
    done = next(i for i, text in enumerate(texts) if text == "INFO talker[bob] talker done")
    for line in alice.lines[:done]:  # each arrived while plexus still ran, ~1.5 s before its end
        assert line.running, f"{line.text!r} came only after plexus had exited"
    for fragment in ("INFO rendezvous: DHT node connected (", "INFO [bob] nat: public 127.0.0.1:",
                     "INFO [bob] offer-sent: invite to bob", "INFO [bob] offer-received: accept from bob (",
                     "INFO [bob] punch: handshake with 127.0.0.1:", "INFO [bob] launch: talker pid ",
                     "INFO [bob] payload: ready", "INFO [bob] payload: exited with 0 ("):
        assert any(text.startswith(fragment) for text in texts[:done + 2]), (fragment, texts)
    assert f"INFO talker[bob] {LONG_LINE}" in texts  # whole: not wrapped, not indented
    assert texts.index("INFO talker[bob] talker ready") < texts.index("INFO [bob] payload: ready")
    assert texts[-1] == "INFO session: ended (exit 0)"
    bob_texts = check_plain(bob)
    assert any(text.startswith("INFO talker[alice] talker says: ") for text in bob_texts)
    assert bob_texts[-1] == "INFO session: stopped by SIGTERM (exit 0)"


def test_json_a_missing_secret_ends_with_the_failure(missing_secret: Path) -> None:
    run = spawn(missing_secret, "--json")
    assert run.finish() == 2
    events = json_events(run)
    assert (events[-1]["phase"], events[-1]["status"], events[-1]["data"]) == ("session", "fail", {"exit_code": 2})
    assert "PLEXUS_TEST_NOT_SET is not set" in events[-1]["message"] and "peer" not in events[-1]


def test_json_a_silent_stun_server_ends_with_the_nat_failure(loopback_world: World) -> None:
    silent = f"127.0.0.1:{free_udp_port()}"
    run = spawn(loopback_world.profile("alice", stun=silent, stun_timeout="500ms"), "--json")
    assert run.finish() == 3
    events = json_events(run)
    failed = [e for e in events if e["status"] == "fail"]
    assert failed[0]["phase"] == "nat" and silent in failed[0]["message"]
    assert (events[-1]["phase"], events[-1]["status"], events[-1]["data"]) == ("session", "fail", {"exit_code": 3})
    assert not any(e["phase"] == "nat" and e["status"] == "ok" for e in events)


@pytest.mark.parametrize(("exit_code", "status"), [(0, "ok"), (3, "fail")])
def test_json_a_session_ends_with_the_payloads_exit_code(loopback_world: World, monkeypatch: pytest.MonkeyPatch,
                                                        exit_code: int, status: str) -> None:
    monkeypatch.setenv("PLEXUS_TEST_EXIT", str(exit_code))
    bob = spawn(loopback_world.profile("bob"), "--json")
    try:
        bob.wait_for('"waiting for invites from alice"')
        alice = spawn(loopback_world.profile("alice"), "--json")
        assert alice.finish() == exit_code, alice.text() + "".join(alice.errors)
    finally:
        assert stop(bob.process, signal.SIGINT) == 0  # an acceptor stopped is a clean end
        bob.finish()
    last = json_events(alice)[-1]
    assert (last["phase"], last["status"], last["data"]) == ("session", status, {"exit_code": exit_code})
    last = json_events(bob)[-1]
    assert (last["phase"], last["status"], last["data"]) == ("session", "stopped",
                                                            {"exit_code": 0, "signal": "SIGINT"})


def test_json_an_initiator_stopped_by_sigterm_ends_with_143(loopback_world: World,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLEXUS_TEST_HOLD", "30")
    bob = spawn(loopback_world.profile("bob"), "--json")
    try:
        bob.wait_for('"waiting for invites from alice"')
        alice = spawn(loopback_world.profile("alice"), "--json")
        alice.wait_for('"message": "ready"')
        assert stop(alice.process) == 143
        alice.finish()
    finally:
        stop(bob.process)
    last = json_events(alice)[-1]
    assert (last["phase"], last["status"], last["data"]) == ("session", "stopped",
                                                            {"exit_code": 143, "signal": "SIGTERM"})


def test_plain_lines_one_line_per_event_and_per_payload_line() -> None:
    stream = io.StringIO()
    lines = PlainLines(stream)
    lines(Event("punch", "fail", "no answer\nwithin 5 s", "alice", 5.0, time=0.5))
    lines(Event("nat", "warn", "hard NAT", "alice", time=1.25))
    lines(Event("mailbox", "start", "connecting", time=2.0))
    log = logging.getLogger("plexus.test-output")
    log.propagate = False
    log.addHandler(lines.handler())
    try:
        log.warning("%s", "x" * 300)
    finally:
        log.handlers.clear()
    first, second, third, fourth = stream.getvalue().splitlines()
    assert first.endswith(".500 ERROR [alice] punch: no answer within 5 s (5000 ms)")
    assert second.endswith(".250 WARN [alice] nat: hard NAT") and third.endswith(".000 INFO mailbox: connecting")
    assert fourth.endswith(" WARN " + "x" * 300) and PLAIN.match(fourth)
    assert textwrap.dedent(stream.getvalue()) == stream.getvalue()
