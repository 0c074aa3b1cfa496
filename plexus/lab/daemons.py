"""Start the lab's daemons in a namespace, record their PIDs, wait until they answer, and stop them.

Daemons in ``srv`` run inside a private mount namespace (``ip netns exec`` makes one) where a few system paths
are covered, so that several labs can run at once and the machine's own config is never used or touched:

- /etc/resolv.conf and /etc/hosts: the lab's own (OpenSMTPD reverse-resolves every client; with the host's
  resolver, unreachable from the lab, each connection stalls for seconds).
- /run and /var/spool: private tmpfs (OpenSMTPD's control socket /run/smtpd.sock and queue /var/spool/smtpd
  are fixed paths); the lab's state directory is bound back into the new /run so its files stay reachable;
  ``run_dirs`` are made in the new /run (sshd's fixed privilege separation directory /run/sshd).

sshd in site b runs the same way (the site's namespace instead of srv's).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence

from plexus.errors import LabError
from plexus.lab import system
from plexus.lab.state import LabState

_PRIVATE_MOUNTS = """\
set -e
cd "$LAB_STATE"
mount --bind etc/resolv.conf /etc/resolv.conf
mount --bind etc/hosts /etc/hosts
mount -t tmpfs -o mode=0755 plexus-lab /var/spool
mount -t tmpfs -o mode=0755 plexus-lab /run
mkdir -p "$LAB_STATE"
# -c: pass "." unresolved, so it is the state directory we are in, now hidden under the new /run
mount -c --bind . "$LAB_STATE"
for dir in $LAB_RUN_DIRS; do mkdir -p -m 0755 "/run/$dir"; done
cd /
exec "$@"
"""


def _command(namespace: str, label: str, argv: Sequence[str], private_mounts: bool) -> list[str]:
    command = ["ip", "netns", "exec", namespace]
    if private_mounts:
        command += ["sh", "-c", _PRIVATE_MOUNTS, label]
    return command + list(argv)


def _env(state: LabState, env: dict[str, str] | None, run_dirs: Sequence[str]) -> dict[str, str]:
    return {**os.environ, **(env or {}), "LAB_STATE": str(state.dir), "LAB_RUN_DIRS": " ".join(run_dirs)}


def start(state: LabState, namespace: str, label: str, argv: Sequence[str], *, private_mounts: bool = False,
          env: dict[str, str] | None = None, run_dirs: Sequence[str] = ()) -> int:
    """Start ``argv`` (a foreground daemon) in ``namespace``; its PID (the daemon's own: ip netns exec and sh
    exec into it) is recorded as ``label``; output goes to ``log/<label>.out``."""
    command = _command(namespace, label, argv, private_mounts)
    with (state.logs / f"{label}.out").open("ab") as log:
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=_env(state, env, run_dirs))
        except OSError as error:
            raise LabError(f"cannot start {argv[0]}: {error.strerror}") from error
    state.record_pid(label, process.pid)
    return process.pid


def check(state: LabState, namespace: str, label: str, argv: Sequence[str], *, private_mounts: bool = False,
          run_dirs: Sequence[str] = (), timeout: float = 10.0) -> None:
    """Run ``argv`` to its end where the daemon ``label`` will run (e.g. a config check); a failure is a
    LabError quoting its last output line."""
    command = _command(namespace, label, argv, private_mounts)
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              env=_env(state, None, run_dirs), check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LabError(f"{label}: {' '.join(argv)}: {error}") from error
    if done.returncode != 0:
        last = ((done.stderr + done.stdout).strip().splitlines() or ["no message"])[-1]
        raise LabError(f"{label}: {' '.join(argv)} failed", hint=last[:200])


def wait_until(check: Callable[[], bool], what: str, state: LabState, *, timeout: float = 10.0,
               pids: Sequence[int] = (), logs: Sequence[str] = ()) -> None:
    """Poll ``check`` (bounded) until it is true; a daemon that died or a timeout is a LabError quoting the
    last line of the daemon's logs (``logs``: file names under log/; the state directory goes at lab down)."""
    deadline = time.monotonic() + timeout
    problem = f"did not come up within {timeout:g} s"
    while time.monotonic() < deadline:
        if check():
            return
        if any(not system.alive(pid) for pid in pids):
            problem = "exited during start"
            break
        time.sleep(0.02)
    raise LabError(f"{what} {problem}", hint=_last_log_line(state, logs) or "no log output")


def _last_log_line(state: LabState, logs: Sequence[str]) -> str:
    for name in logs:
        try:
            lines = [line.strip() for line in (state.logs / name).read_text(errors="replace").splitlines()]
        except OSError:
            continue
        meaningful = [line for line in lines if line and "Protocol not supported" not in line]
        if meaningful:
            return f"{name}: {meaningful[-1][:200]}"
    return ""


def tcp_ready(namespace: str, endpoints: Sequence[tuple[str, int]]) -> bool:
    """True when every endpoint accepts a TCP connection from inside ``namespace``."""
    def probe() -> bool:
        for endpoint in endpoints:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
                probe_socket.settimeout(0.2)
                try:
                    probe_socket.connect(endpoint)
                except OSError:
                    return False
        return True

    return system.in_netns(namespace, probe)


def stop(state: LabState, labels: Sequence[str], *, grace: float = 0.3) -> None:
    """Stop the recorded daemons ``labels`` and their children: SIGTERM, a short wait, then SIGKILL."""
    pids = state.pids()
    chosen = [pids[label] for label in labels if label in pids]
    system.stop_pids(system.with_descendants(chosen), grace=grace)
    for label in labels:
        state.forget_pid(label)

