"""`plexus lab demo`: the lab up, `plexus up` on sites b (accepts alice) and a (initiates to bob), a ping across
the tunnel with the time from start to tunnel, then everything down again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from rich.console import Console

from plexus.errors import LabError
from plexus.lab.lab import Lab

TUNNEL_PEER = {"a": "198.19.0.2", "b": "198.19.0.1"}
READY_TIMEOUT = 40.0


class _Side:
    def __init__(self, lab: Lab, site: str, profile: str, console: Console) -> None:
        self.lab, self.site, self.profile, self.console = lab, site, profile, console
        self.process: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.log: list[str] = []

    async def start(self) -> None:
        argv = self.lab.command(self.site, [sys.executable, "-m", "plexus", "-q", "up", self.profile, "--json"])
        self.process = await asyncio.create_subprocess_exec(
            *argv, env=self.lab.env(self.site), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.lab.state.record_pid(f"demo-{self.site}", self.process.pid)
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        who = f"{self.site} ({self.lab.user(self.site)})"
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            try:
                event = json.loads(line) if line.startswith("{") else None
            except json.JSONDecodeError:
                event = None
            if event is None:
                self.log.append(line)
                continue
            self.events.append(event)
            self.changed.set()
            if event["status"] in ("ok", "fail", "warn") or (event["phase"], event["status"]) == ("payload", "info"):
                style = {"ok": "green", "fail": "red", "warn": "yellow"}.get(event["status"], "cyan")
                took = f" [dim]{event['duration'] * 1000:.0f} ms[/]" if "duration" in event else ""
                self.console.print(f"  [bold]{who}[/] [{style}]{event['phase']}[/]: {event.get('message', '')}{took}")
        self.changed.set()

    def has(self, phase: str, status: str) -> bool:
        return any(e["phase"] == phase and e["status"] == status for e in self.events)

    async def wait_for(self, phase: str, status: str, deadline: float) -> None:
        while not self.has(phase, status):
            if self.process is not None and self.process.returncode is not None:
                tail = "\n".join(self.log[-5:])
                raise LabError(f"plexus up on site {self.site} ended with {self.process.returncode} before "
                               f"{phase} {status}: {tail}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabError(f"site {self.site}: no {phase} {status} within {READY_TIMEOUT:g} s")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGINT)  # the way a user stops it: Ctrl-C
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.lab.stop(self.process.pid)
        self.lab.state.forget_pid(f"demo-{self.site}")
        return self.process.returncode


async def _ping_until(lab: Lab, site: str, address: str, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        probe = await asyncio.create_subprocess_exec(
            *lab.command(site, ["ping", "-c1", "-W0.2", address]), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        if await probe.wait() == 0:
            return time.monotonic()
    return None


async def _demo(lab: Lab, template: str, console: Console) -> int:
    bob_profile, alice_profile = "alice", "bob"
    if template != "openvpn":
        lab.write_profile("b", f"alice-{template}", template=template)
        lab.write_profile("a", f"bob-{template}", template=template)
        bob_profile, alice_profile = f"alice-{template}", f"bob-{template}"
    bob = _Side(lab, "b", bob_profile, console)
    alice = _Side(lab, "a", alice_profile, console)
    console.print(f"[bold]plexus lab exec b -- plexus up {bob_profile}[/]   (bob accepts)")
    console.print(f"[bold]plexus lab exec a -- plexus up {alice_profile}[/]     (alice initiates)")
    started = time.monotonic()
    deadline = started + READY_TIMEOUT
    try:
        await asyncio.gather(bob.start(), alice.start())
        await asyncio.gather(alice.wait_for("launch", "ok", deadline), bob.wait_for("launch", "ok", deadline))
        launched = time.monotonic()
        answered = await _ping_until(lab, "a", TUNNEL_PEER["a"], deadline)
        if answered is None:
            console.print(f"[red]no ping across the tunnel to {TUNNEL_PEER['a']} within {READY_TIMEOUT:g} s[/]")
            return 1
        console.print(f"[green bold]tunnel up[/]: payload launched on both sides {launched - started:.2f} s after "
                      f"start; first ping across {TUNNEL_PEER['a']} answered after {answered - started:.2f} s")
        done = await asyncio.create_subprocess_exec(
            *lab.command("a", ["ping", "-c3", "-i0.2", TUNNEL_PEER["a"]]), stdout=subprocess.PIPE)
        output, _ = await done.communicate()
        console.print(output.decode(errors="replace").rstrip(), markup=False, highlight=False)
        return 0 if done.returncode == 0 else 1
    finally:
        await asyncio.gather(alice.stop(), bob.stop())


def run_demo(args: Any) -> int:
    console = Console()
    name = os.environ.get("PLEXUS_LAB_NAME") or "plexus"
    lab = Lab(name)
    existed = lab.state.exists() and lab.is_up()
    if not existed:
        started = time.monotonic()
        lab = Lab.up(name)
        console.print(f"lab '{name}' up in {time.monotonic() - started:.2f} s: sites a and b behind NATs "
                      f"({lab.public_address('a')}, {lab.public_address('b')}), STUN and mail in the server namespace")
    try:
        return asyncio.run(_demo(lab, args.template, console))
    finally:
        if not existed and not args.keep:
            started = time.monotonic()
            lab.down()
            console.print(f"lab '{name}' down in {time.monotonic() - started:.2f} s")
