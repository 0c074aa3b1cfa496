"""Secret commands (``password: {command: [...]}``): run without blocking the event loop, cancelled with their
whole process group, capped in output, cached; and ``plexus up`` stops at once on Ctrl-C while one runs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plexus.errors import ProfileError
from plexus.profile import secrets
from plexus.profile.model import SecretRef


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    secrets.forget()
    yield
    secrets.forget()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def pids_in(path: Path, count: int, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(lines := path.read_text().split()) >= count:
            return [int(line) for line in lines[:count]]
        time.sleep(0.02)
    raise AssertionError(f"{path} did not get {count} pids")


def gone(pids: list[int], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


async def test_a_slow_command_is_cancelled_with_its_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    # the shell and a helper it starts: both must go
    ref = SecretRef("command", ("sh", "-c", f"echo $$ > {pidfile}; sleep 60 & echo $! >> {pidfile}; wait"))
    task = asyncio.ensure_future(secrets.fetch(ref))
    pids = await asyncio.to_thread(pids_in, pidfile, 2)
    await asyncio.sleep(0.1)
    assert not task.done()  # the event loop is free while the command runs
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    assert gone(pids), [pid for pid in pids if alive(pid)]


async def test_the_loop_keeps_running_while_a_command_runs() -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.ensure_future(tick())
    try:
        assert await secrets.fetch(SecretRef("command", ("sh", "-c", "sleep 0.5; echo pw"))) == "pw"
    finally:
        ticker.cancel()
    assert ticks > 10


async def test_endless_output_is_a_clear_error_fast_and_in_bounded_memory(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    ref = SecretRef("command", ("sh", "-c", f"echo $$ > {pidfile}; exec cat /dev/zero"))
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProfileError, match=r"^secret: command 'sh' printed more than 64 KiB"):
            await secrets.fetch(ref)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    assert peak < 2 * 1024 * 1024, peak
    assert gone(pids_in(pidfile, 1))


def test_the_synchronous_path_has_the_same_cap() -> None:
    # (a bounded amount: before the cap, resolve() returned all of it; endless output grew until MemoryError)
    ref = SecretRef("command", ("head", "-c", "200000", "/dev/zero"))
    with pytest.raises(ProfileError, match=r"printed more than 64 KiB"):
        ref.resolve()


def test_the_synchronous_path_kills_the_group_on_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "TIMEOUT", 0.5)
    pidfile = tmp_path / "pids"
    ref = SecretRef("command", ("sh", "-c", f"echo $$ > {pidfile}; sleep 60 & echo $! >> {pidfile}; wait"))
    started = time.monotonic()
    with pytest.raises(ProfileError, match=r"did not finish within 0.5 s"):
        ref.resolve()
    assert time.monotonic() - started < 2.0
    assert gone(pids_in(pidfile, 2))


async def test_a_value_is_returned_cached_and_never_shown(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # (the value is made by the command, so that the argv in the repr does not contain it)
    ref = SecretRef("command", ("sh", "-c", f"echo run >> {runs}; echo gtmsdq2 | tr a-y b-z"))
    assert await secrets.fetch(ref) == "hunter2"
    assert ref.resolve() == "hunter2"  # the synchronous path takes the fetched value ...
    assert await secrets.fetch(ref) == "hunter2"
    assert runs.read_text() == "run\n"  # ... and the command ran once
    assert "hunter2" not in repr(ref) + str(ref)


async def test_resolve_secrets_fetches_the_profile_s_commands_concurrently() -> None:
    from dataclasses import replace

    from support.rendezvous import make_profile

    from plexus.profile.model import EmailRendezvous, ImapServer, MailServer

    def slow(value: str) -> SecretRef:
        return SecretRef("command", ("sh", "-c", f"sleep 0.6; echo {value}"))

    password, psk, bobs = slow("mail-pw"), slow("a-shared-key-long-enough"), slow("bobs-own-key-long-enough")
    email = EmailRendezvous(MailServer("127.0.0.1", 1), ImapServer("127.0.0.1", 1), "alice", password)
    profile: Any = make_profile("alice", [("bob", None), ("carol", None)], method="psk", email=email)
    authentication = replace(profile.rendezvous.authentication, psk=psk)
    peers = (replace(profile.peers[0], psk=bobs), profile.peers[1])  # bob has his own key, carol the shared one
    profile = replace(profile, peers=peers, rendezvous=replace(profile.rendezvous, authentication=authentication))
    started = time.monotonic()
    await secrets.resolve_secrets(profile)
    assert time.monotonic() - started < 1.1  # all at once
    assert [password.resolve(), psk.resolve(), bobs.resolve()] == ["mail-pw", "a-shared-key-long-enough",
                                                                  "bobs-own-key-long-enough"]
    assert time.monotonic() - started < 1.1  # resolve() ran nothing


@pytest.mark.parametrize(("argv", "message"), [
    (("false",), r"^secret: command 'false' exited with 1$"),
    (("no-such-program-plexus",), r"^secret: command 'no-such-program-plexus' cannot be started: No such file"),
    (("sh", "-c", "kill -9 $$"), r"^secret: command 'sh' was killed by signal 9$"),
    (("printf", r"\377\376"), r"^secret: command 'printf' printed something that is not UTF-8 text$"),
])
async def test_failures_are_one_line(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        await secrets.fetch(SecretRef("command", argv))
    assert re.search(message, caught.value.message) and caught.value.hint


# -- plexus up -------------------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _program(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return b""


def test_ctrl_c_stops_plexus_up_during_a_slow_secret_command(examples: Path) -> None:
    profile = examples / "laptop.yaml"
    text = profile.read_text()
    text = text.replace("password: {env: PLEXUS_MAIL_PASSWORD}", "password: {command: [sleep, '60']}")
    text = re.sub(r"host: (smtp|imap)\.example\.org", "host: 127.0.0.1", text)  # nothing leaves loopback
    text = text.replace('"stun.example.org:3478"', '"127.0.0.1:9"')
    assert "sleep, '60'" in text and "example.org, port" not in text
    profile.write_text(text)
    plexus = subprocess.Popen([sys.executable, "-m", "plexus", "up", str(profile), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=examples)
    try:
        deadline = time.monotonic() + 15
        sleeper = None
        while sleeper is None and time.monotonic() < deadline and plexus.poll() is None:
            sleeper = next((pid for pid in _children(plexus.pid) if _program(pid) == b"sleep"), None)
            time.sleep(0.05)
        assert sleeper is not None, plexus.communicate(timeout=5)
        time.sleep(0.3)  # well inside the command
        started = time.monotonic()
        plexus.send_signal(signal.SIGINT)
        out, err = plexus.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if plexus.poll() is None:
            plexus.kill()
            plexus.wait()
    assert plexus.returncode == 130, (out, err)
    assert took < 2.0, took
    assert gone([sleeper])
    assert "Traceback" not in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_command_dies_with_a_killed_plexus(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    script = (f"from plexus.profile.model import SecretRef\n"
              f"SecretRef('command', ('sh', '-c', 'echo $$ > {pidfile}; exec sleep 60')).resolve()\n")
    holder = subprocess.Popen([sys.executable, "-c", script])
    try:
        (pid,) = pids_in(pidfile, 1)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        assert gone([pid])
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
