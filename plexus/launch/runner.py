"""Run the payload: render its template into a private run directory, start its argv (no shell) at once, pass
its output into our log with a prefix, pass SIGINT/SIGTERM on, remove the run directory, return its exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

from plexus.errors import LaunchError
from plexus.events import Event, Reporter
from plexus.launch.template import Prepared, SessionContext, Template, render

log = logging.getLogger("plexus.payload")

STOP_GRACE = 5.0  # seconds between the passed-on signal and SIGKILL


def run_root() -> Path:
    """Where private run directories go: $XDG_RUNTIME_DIR/plexus, /run/plexus for root, else the temp dir."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "plexus"
    if os.geteuid() == 0 and Path("/run").is_dir():
        return Path("/run/plexus")
    return Path(tempfile.gettempdir()) / f"plexus-{os.geteuid()}"


def make_run_dir(label: str) -> Path:
    root = run_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:40]
    return Path(tempfile.mkdtemp(prefix=f"{safe}-", dir=root))  # mkdtemp makes it 0700


def _mask(line: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            line = line.replace(secret, "***")
    return line


class PayloadProcess:
    """One running payload. ``await start()``, then ``await wait()``; ``stop(sig)`` passes a signal on."""

    def __init__(self, template: Template, prepared: Prepared, context: SessionContext, report: Reporter) -> None:
        self.template, self.prepared, self.context, self.report = template, prepared, context, report
        self.peer = context.peer_id
        self.run_dir: Path | None = None
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._secrets: list[str] = []
        self.ready = asyncio.Event()
        self.failure: str | None = None  # an output line matching the template's `failure` pattern

    async def start(self) -> None:
        self.run_dir = make_run_dir(f"{self.context.host_id}-{self.peer}")
        try:
            rendered = render(self.template, self.prepared, self.context, self.run_dir)
            self._secrets = list(rendered.secrets)
            env = {**os.environ, **rendered.env}
            try:
                self.process = await asyncio.create_subprocess_exec(
                    *rendered.argv, env=env, cwd=self.run_dir, stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True)  # our terminal's Ctrl-C reaches it through us, once
            except OSError as error:
                raise LaunchError(f"cannot start {rendered.argv[0]!r}: {error.strerror}",
                                  hint=f"install {rendered.argv[0]} or fix the template's argv") from error
        except BaseException:
            self._remove_run_dir()
            raise
        self._reader = asyncio.get_running_loop().create_task(self._read_output())

    async def _read_output(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        ready = re.compile(self.template.ready) if self.template.ready else None
        failure = re.compile(self.template.failure) if self.template.failure else None
        prefix = f"{self.template.name}[{self.peer}]"
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                break
            line = _mask(raw.decode(errors="replace").rstrip(), self._secrets)
            log.info("%s %s", prefix, line)
            if ready is not None and not self.ready.is_set() and ready.search(line):
                self.ready.set()
                self.report(Event("payload", "info", "ready", self.peer, data={"pid": self.process.pid}))
            if failure is not None and self.failure is None and failure.search(line):
                self.failure = line  # e.g. openvpn's tls-exit / ping-exit, which still exit with 0

    async def watch_ready(self) -> None:
        """Stop a payload that never says it is up (a peer that fails its own authentication, say)."""
        if not self.template.ready:
            return
        try:
            await asyncio.wait_for(self.ready.wait(), self.template.ready_timeout)
        except TimeoutError:
            self.failure = f"not ready within {self.template.ready_timeout:g} s"
            self.report(Event("payload", "fail", self.failure, self.peer))
            await self.terminate()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def wait(self) -> int:
        """Wait for the payload to end and return its exit code (128+N for signal N). On cancellation the
        signal named in the cancel message ("SIGINT") or SIGTERM is passed on, then SIGKILL after a grace time."""
        assert self.process is not None
        try:
            code = await self.process.wait()
        except asyncio.CancelledError as cancel:
            name = cancel.args[0] if cancel.args and isinstance(cancel.args[0], str) else "SIGTERM"
            await self.terminate(getattr(signal, name, signal.SIGTERM))
            raise
        finally:
            await self._finish()
        code = 128 - code if code < 0 else code
        return 1 if code == 0 and self.failure else code

    async def terminate(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.stop(sig)
        try:
            await asyncio.wait_for(asyncio.shield(self.process.wait()), STOP_GRACE)
        except TimeoutError:
            log.warning("%s[%s] did not stop within %.0f s; killing it", self.template.name, self.peer, STOP_GRACE)
            self.stop(signal.SIGKILL)
            await self.process.wait()

    async def _finish(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._reader, 1.0)
        self._remove_run_dir()

    def _remove_run_dir(self) -> None:
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None


async def run_payload(template: Template, prepared: Prepared, context: SessionContext, report: Reporter) -> int:
    """Start the payload at once and wait for it; report launch and exit; return its exit code."""
    if template.builtin is not None:
        from plexus.forward.payload import run_forward_payload  # the only built-in (manifest.BUILTINS)

        return await run_forward_payload(template, prepared, context, report)
    started = time.monotonic()
    report(Event("launch", "start", f"{template.name}", context.peer_id))
    payload = PayloadProcess(template, prepared, context, report)
    try:
        await payload.start()
    except LaunchError as error:
        report(Event("launch", "fail", str(error), context.peer_id, time.monotonic() - started))
        raise
    assert payload.process is not None
    report(Event("launch", "ok", f"{template.name} pid {payload.process.pid}", context.peer_id,
                 time.monotonic() - started, {"pid": payload.process.pid}))
    watchdog = asyncio.get_running_loop().create_task(payload.watch_ready())
    try:
        code = await payload.wait()
    finally:
        watchdog.cancel()
    reason = f" ({payload.failure})" if payload.failure else ""
    report(Event("payload", "ok" if code == 0 else "fail", f"exited with {code}{reason}", context.peer_id,
                 time.monotonic() - started, {"exit_code": code}))
    return code
