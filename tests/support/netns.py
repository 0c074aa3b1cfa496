"""Two network namespaces joined by a veth pair, for the payload template tests (tests/launch/test_payload_*.py).

Each test module passes its own name prefix so that no two modules (or other helpers' tests) share names.
Addresses: side a 198.18.200.1/24, side b 198.18.200.2/24. Processes are started through ``ip netns exec``
and stopped by their PIDs when the pair is removed.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from plexus.launch.template import Rendered, SessionContext, find_template, prepare, render

ADDRESS = {"a": "198.18.200.1", "b": "198.18.200.2"}
_STOP_GRACE = 5.0


def require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.fail(f"{program} is not installed: apt-get install {package}")
    return path


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *argv], capture_output=True, text=True, check=check, timeout=10)


@dataclass
class NetnsPair:
    prefix: str
    logs: Path
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def ns(self, side: str) -> str:
        return f"{self.prefix}-{side}"

    def start(self, side: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside namespace ``side``; its output goes to a log file (see :meth:`log`)."""
        log = self.logs / f"{side}-{len(self.processes)}.log"
        env_args = ["env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns(side), *env_args, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self.processes.append((proc, log))
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        for candidate, path in self.processes:
            if candidate is proc:
                return path.read_text(errors="replace")
        return ""

    def run(self, side: str, argv: list[str], timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.ns(side), *argv],
                              capture_output=True, text=True, timeout=timeout)

    def ping(self, side: str, target: str) -> bool:
        return self.run(side, ["ping", "-n", "-c1", "-W0.2", target], timeout=5).returncode == 0

    def wait_ping(self, side: str, target: str, bound: float) -> float | None:
        """Seconds until one ping from ``side`` to ``target`` answers, or None within ``bound`` seconds."""
        started = time.monotonic()
        while time.monotonic() - started < bound:
            if self.ping(side, target):
                return time.monotonic() - started
            time.sleep(0.05)
        return None

    def stop_all(self) -> None:
        for proc, _ in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_GRACE
        for proc, _ in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _delete(prefix: str) -> None:
    for side in ADDRESS:
        _ip("netns", "del", f"{prefix}-{side}", check=False)


@contextlib.contextmanager
def netns_pair(prefix: str, logs: Path) -> Iterator[NetnsPair]:
    require("ip", "iproute2")
    require("ping", "iputils-ping")
    _delete(prefix)  # a crashed earlier run may have left them
    pair = NetnsPair(prefix, logs)
    a, b = pair.ns("a"), pair.ns("b")
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", f"{prefix}a0", "netns", a, "type", "veth", "peer", "name", f"{prefix}b0", "netns", b)
        for side, ns in (("a", a), ("b", b)):
            dev = f"{prefix}{side}0"
            _ip("-n", ns, "address", "add", f"{ADDRESS[side]}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        if not pair.ping("a", ADDRESS["b"]):
            pytest.fail(f"the veth pair {prefix}a0/{prefix}b0 does not carry a ping")
        yield pair
    finally:
        pair.stop_all()
        _delete(prefix)


def render_pair(
    name: str, run_root: Path, vars_a: dict[str, object], vars_b: dict[str, object], port: int = 40000,
    peer_values_override: dict[str, dict[str, str]] | None = None,
) -> dict[str, Rendered]:
    """Prepare both sides, swap their exports as the offers would, render both: a accepts, b initiates."""
    template = find_template(name)
    prepared = {side: prepare(template) for side in ADDRESS}
    rendered = {}
    for side, other, role, vars in (("a", "b", "accept", vars_a), ("b", "a", "initiate", vars_b)):
        peer_values = dict(prepared[other].exports)
        peer_values.update((peer_values_override or {}).get(side, {}))
        ctx = SessionContext(
            inner=("0.0.0.0", port), outer=(ADDRESS[side], port), peer=(ADDRESS[other], port),
            secret=bytes(range(32)), host_id=f"host-{side}", peer_id=f"host-{other}", role=role,
            peer_values=peer_values, vars=dict(vars),
        )
        run_dir = run_root / f"run-{side}"
        run_dir.mkdir(mode=0o700)
        rendered[side] = render(template, prepared[side], ctx, run_dir)
    return rendered
