"""Small system helpers for the lab: run a command (one-line errors), check the machine can host a lab, stop
processes by PID, and open a socket inside a network namespace."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from plexus.errors import LabError

# command -> Debian package that provides it
REQUIRED_COMMANDS = {
    "ip": "iproute2",
    "iptables-restore": "iptables",
    "turnserver": "coturn",
    "dovecot": "dovecot-imapd dovecot-lmtpd dovecot-submissiond",
    "smtpd": "opensmtpd",
    "openvpn": "openvpn",
}
DOVECOT_PLUGINS = {  # dovecot-core alone lacks these protocol binaries
    "/usr/lib/dovecot/imap": "dovecot-imapd",
    "/usr/lib/dovecot/lmtp": "dovecot-lmtpd",
    "/usr/lib/dovecot/submission": "dovecot-submissiond",
}


def check_host() -> None:
    """Raise a one-line LabError unless this is Linux, we are root and every needed program is installed."""
    if not sys.platform.startswith("linux"):
        raise LabError("the lab needs Linux (network namespaces, iptables)", hint=f"this is {sys.platform}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces)", hint="run it with sudo")
    missing: list[str] = []
    for command, package in REQUIRED_COMMANDS.items():
        if shutil.which(command) is None and shutil.which(command, path="/usr/sbin:/sbin") is None:
            missing += [p for p in package.split() if p not in missing]
    for path, package in DOVECOT_PLUGINS.items():
        if not os.path.exists(path) and package not in missing:
            missing.append(package)
    if missing:
        raise LabError(f"the lab needs the Debian package(s) {', '.join(missing)}",
                       hint=f"apt-get install -y --no-install-recommends {' '.join(missing)}")


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """Run a short command; a failure becomes a LabError quoting the command and its stderr's last line."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LabError(f"{' '.join(argv[:6])}: {error}") from error
    if check and done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise LabError(f"{' '.join(argv[:8])} failed: {last}")
    return done


def run_batch(commands: Iterable[Sequence[str]], *, timeout: float = 10) -> None:
    """Run many ``ip`` commands in one ``ip -batch`` process (each line is one ip command; fast)."""
    lines = [" ".join(c) for c in commands]
    if lines:
        run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", timeout=timeout)


def netns_pids(namespaces: Iterable[str]) -> list[int]:
    """PIDs of the processes living in any of these network namespaces (one scan of /proc)."""
    inodes = set()
    for namespace in namespaces:
        try:
            inodes.add(os.stat(f"/run/netns/{namespace}").st_ino)
        except OSError:
            continue
    if not inodes:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                    found.append(int(entry))
            except OSError:
                continue  # gone meanwhile
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (dead, not yet reaped by its parent) counts as gone. Never reaps,
    so a subprocess.Popen still gets its own return code."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot): with the PID, it names one process, not a reused PID."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def stop_pids(pids: Iterable[int], *, grace: float = 1.5) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL what is left (each PID only)."""
    pids = [p for p in set(pids) if p > 1 and p != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


_CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def in_netns(namespace: str, function: Callable[[], T]) -> T:
    """Call ``function`` in a helper thread that has joined ``namespace`` (setns affects only the calling
    thread). Sockets it creates stay in that namespace; files it opens under /proc/sys/net are that
    namespace's sysctls."""
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[Any] = []

    def target() -> None:
        try:
            with open(f"/run/netns/{namespace}", "rb") as handle:
                if libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
            result.append((True, function()))
        except BaseException as error:
            result.append((False, error))

    worker = threading.Thread(target=target, name=f"netns-{namespace}")
    worker.start()
    worker.join()
    ok, value = result[0]
    if not ok:
        if isinstance(value, FileNotFoundError) and namespace in str(value.filename):
            raise LabError(f"network namespace {namespace} does not exist", hint="plexus lab up") from None
        raise value
    return cast(T, value)


def set_sysctl(namespace: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(path, "w") as handle:
            handle.write(value)

    in_netns(namespace, write)


def netns_socket(namespace: str, family: int = socket.AF_INET, kind: int = socket.SOCK_DGRAM) -> socket.socket:
    """A socket created inside ``namespace``; it stays there for its whole life (use it from asyncio with
    ``sock=``)."""
    return in_netns(namespace, lambda: socket.socket(family, kind))


def with_descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and all their descendants (taken now, before anything is signalled and reparented)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += children.get(pid, [])
    return found


_NETLINK_NETFILTER = 12
_CTNETLINK_DELETE = (1 << 8) | 2  # subsystem ctnetlink, IPCTNL_MSG_CT_DELETE
_NLM_F_REQUEST, _NLM_F_ACK, _NLMSG_ERROR = 1, 4, 2


def flush_conntrack(namespace: str) -> None:
    """Forget every IPv4 connection tracking entry of ``namespace`` (what ``conntrack -F`` does: a ctnetlink
    delete without attributes), so flows are mapped afresh by the current NAT rules."""
    def flush() -> None:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER) as sock:
            sock.settimeout(2)
            sock.bind((0, 0))
            body = struct.pack("!BBH", socket.AF_INET, 0, 0)  # nfgenmsg: family, version, resource id
            sock.send(struct.pack("=IHHII", 16 + len(body), _CTNETLINK_DELETE, _NLM_F_REQUEST | _NLM_F_ACK, 1, 0)
                      + body)
            reply = sock.recv(4096)
            msg_type = struct.unpack_from("=H", reply, 4)[0]
            error = -struct.unpack_from("=i", reply, 16)[0] if msg_type == _NLMSG_ERROR else 0
            if error:
                raise LabError(f"cannot flush connection tracking in {namespace}: {os.strerror(error)}")

    in_netns(namespace, flush)
