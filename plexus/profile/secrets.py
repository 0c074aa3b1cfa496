"""Secret commands (``{command: [argv...]}``): run without blocking, cancellable, capped, and never outliving us.

``plexus up`` calls ``await resolve_secrets(profile)`` first: every secret command of the profile runs at once,
as an asyncio subprocess, and its value is cached, so that the synchronous ``SecretRef.resolve()`` the carriers
and authenticators call later returns it without running anything. A command that was not fetched so (``plexus
doctor``'s PSK, the probes, other programs) runs synchronously on ``resolve()``, under the same limits:

- at most ``MAX_OUTPUT`` bytes of output (more is an error, and the command is killed), ``TIMEOUT`` seconds;
- its own session and process group (``start_new_session``): Ctrl-C in the terminal reaches plexus only, and
  plexus kills the whole group (helpers the command started, too) when it gives up, is cancelled or exits;
- on Linux ``PR_SET_PDEATHSIG``: the command is killed should plexus itself be SIGKILLed. That reaches the
  command only, not what it started; those are orphaned, since a SIGKILL cannot be caught.

stdin is /dev/null and stderr is discarded (a prompt cannot work: the command has no terminal). The values live
in a module-level dict keyed by the reference, never in a repr or a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from plexus.errors import ProfileError

if TYPE_CHECKING:
    from plexus.profile.model import Profile, SecretRef

MAX_OUTPUT = 64 * 1024
TIMEOUT = 30.0
REAP_TIMEOUT = 2.0
_CHUNK = 16 * 1024
_PR_SET_PDEATHSIG = 1

_values: dict[SecretRef, str] = {}


async def resolve_secrets(profile: Profile) -> None:
    """Run every secret command the profile uses, concurrently, and cache the values; the first failure is a
    ProfileError naming the command (the others are then killed)."""
    refs = {ref for ref in _refs(profile) if ref.kind == "command" and ref not in _values}
    tasks = [asyncio.ensure_future(fetch(ref)) for ref in refs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _refs(profile: Profile) -> Iterator[SecretRef]:
    """The secrets ``plexus up`` will resolve (as ``EmailCarrier`` and ``authenticator_for`` do)."""
    if profile.rendezvous.email is not None:
        yield profile.rendezvous.email.password
    if profile.relay.usable:
        yield from (ref for server in profile.relay.servers for ref in (server.password, server.secret) if ref)
    auth = profile.rendezvous.authentication
    if auth.method == "psk":
        yield from (peer.psk for peer in profile.peers if peer.psk is not None)
        if auth.psk is not None and any(peer.psk is None for peer in profile.peers):
            yield auth.psk


async def fetch(ref: SecretRef) -> str:
    """The secret's value, a command's run asynchronously (and cached); a ProfileError when it cannot be had."""
    if ref.kind != "command":
        return ref.resolve()
    if ref not in _values:
        _values[ref] = await run_command(ref.source)
    return _values[ref]


def cached_or_run(ref: SecretRef) -> str:
    """For ``SecretRef.resolve()``: the fetched value, else the command run now, synchronously (and cached)."""
    if ref not in _values:
        _values[ref] = run_command_sync(ref.source)
    return _values[ref]


def forget() -> None:
    """Drop every cached value (tests; a program that wants the commands run again)."""
    _values.clear()


# -- running -----------------------------------------------------------------------------------------------------

async def run_command(argv: Sequence[str]) -> str:
    """Run a secret command as an asyncio subprocess; its output without the final newline."""
    name = argv[0]
    try:
        process = await asyncio.create_subprocess_exec(*argv, **_options())
    except OSError as error:
        raise _not_started(name, error) from error
    assert process.stdout is not None
    finished = False
    try:
        async with asyncio.timeout(TIMEOUT):
            output = bytearray()
            while chunk := await process.stdout.read(_CHUNK):
                output += chunk
                _check_size(name, output)
            code = await process.wait()
        finished = True
    except TimeoutError:
        raise _too_slow(name) from None
    finally:
        if not finished:  # cancelled, too slow, or too much output: the whole group goes
            _kill_group(process.pid)
            await _reap(process)
    return _value(name, code, output)


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for a killed command. asyncio's wait() also waits for stdout to close, so read it to its end (our
    reading may be paused); bounded, for a helper that left the group (setsid) and keeps stdout open. The child
    watcher reaps the command in any case."""
    assert process.stdout is not None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(REAP_TIMEOUT):
            while await process.stdout.read(_CHUNK):
                pass
            await process.wait()


def run_command_sync(argv: Sequence[str]) -> str:
    """``run_command`` for callers without an event loop: the same limits, blocking."""
    import selectors

    name = argv[0]
    try:
        process = subprocess.Popen(list(argv), **_options())
    except OSError as error:
        raise _not_started(name, error) from error
    assert process.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    try:
        output = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    raise _too_slow(name)
                chunk = os.read(process.stdout.fileno(), _CHUNK)
                if not chunk:
                    break
                output += chunk
                _check_size(name, output)
        code = process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise _too_slow(name) from None
    finally:  # also on KeyboardInterrupt
        if process.returncode is None:
            _kill_group(process.pid)
            process.wait()  # (waitpid: a helper holding stdout open does not matter here)
        process.stdout.close()
    return _value(name, code, output)


def _options() -> dict[str, Any]:
    options: dict[str, Any] = dict(stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
    die_with_us = _die_with_parent()
    if die_with_us is not None:
        options["preexec_fn"] = die_with_us
    return options


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to SIGKILL the child when we die (Linux); None elsewhere. The kernel sends
    it when the thread that started the child ends: the loop's or the caller's, which outlive the command. It
    only calls a function looked up beforehand: between fork and exec, little is safe."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # we died before the prctl took effect
            os._exit(1)

    return preexec


def _kill_group(pid: int) -> None:
    # The command leads its own group (start_new_session). The group id cannot be reused while the leader is
    # unreaped or any member lives, which is when this matters.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _check_size(name: str, output: bytearray) -> None:
    if len(output) > MAX_OUTPUT:
        raise ProfileError(f"secret: command {name!r} printed more than {MAX_OUTPUT // 1024} KiB",
                           hint="the command must print only the secret")


def _value(name: str, code: int, output: bytearray) -> str:
    if code != 0:
        what = f"was killed by signal {-code}" if code < 0 else f"exited with {code}"
        raise ProfileError(f"secret: command {name!r} {what}", hint="run it by hand to see why")
    try:
        return output.decode().rstrip("\r\n")
    except UnicodeDecodeError:
        raise ProfileError(f"secret: command {name!r} printed something that is not UTF-8 text",
                           hint="the command must print only the secret") from None


def _not_started(name: str, error: OSError) -> ProfileError:
    return ProfileError(f"secret: command {name!r} cannot be started: {error.strerror or error}",
                        hint="check the program name in the profile; it runs without a shell")


def _too_slow(name: str) -> ProfileError:
    return ProfileError(f"secret: command {name!r} did not finish within {TIMEOUT:g} s",
                        hint="it must print the secret without asking (it has no terminal)")
