"""The wireguard template's launcher: bring a WireGuard interface up, stay in the foreground, tear it down.

``python -m plexus.launch.wg_up --conf wg.conf --address 198.19.0.1 --peer-address 198.19.0.2``

WireGuard takes several steps (create the interface, ``wg setconf``, address, up) and has no process that
lives as long as the tunnel, so this launcher is that process: plexus watches it, and SIGTERM/SIGINT remove the
interface. It uses the kernel module when ``ip link add type wireguard`` works, else Debian's userspace
``wireguard-go`` in the foreground. Interface names are unique per launcher (the PID) because wireguard-go's
control socket ``/var/run/wireguard/<name>.sock`` is shared by all network namespaces.

"Ready" means traffic can flow: after configuring, the launcher waits for the first completed handshake
(``wg show NAME latest-handshakes``) and only then prints ``HANDSHAKE_LINE``, which the template's ``ready``
matches; with ``--first-handshake`` it gives up after that many seconds (exit 3) so the session is retried
through a new punch instead of sitting on a tunnel that never came up. Only the initiator names the peer's
endpoint (the template), so the first initiations never cross (wireguard-go could then stall for 25-45 s).

With ``--dead-after`` the launcher exits 3 when nothing has come from the peer for that long (its keepalives
arrive every few seconds; ``wg show NAME transfer``), so the restart policy can punch a new path after a NAT
dropped the mapping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

UAPI_DIR = Path("/var/run/wireguard")
READY_LINE = "plexus-wg: interface {name} up ({mode})"
HANDSHAKE_LINE = "plexus-wg: handshake with the peer after {seconds:.2f} s"
EXIT_DEAD_PEER = 3
_START_TIMEOUT = 5.0
_STOP_GRACE = 3.0
_PR_SET_PDEATHSIG = 1


class SetupError(Exception):
    pass


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0:
        text = " ".join(output.decode(errors="replace").split())
        raise SetupError(f"{' '.join(argv)} failed (exit {proc.returncode}): {text}")


async def _try_kernel(name: str) -> bool:
    try:
        await _run("ip", "link", "add", "dev", name, "type", "wireguard")
    except SetupError:
        return False
    return True


def _die_with_parent() -> None:
    # If this launcher is killed outright (SIGKILL), wireguard-go must not live on holding the interface.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _start_userspace(name: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "WG_PROCESS_FOREGROUND": "1"}
    try:
        proc = await asyncio.create_subprocess_exec(
            "wireguard-go", name, stdin=asyncio.subprocess.DEVNULL, env=env, preexec_fn=_die_with_parent
        )
    except FileNotFoundError:
        raise SetupError("no kernel WireGuard and no wireguard-go (install the wireguard-go package)") from None
    socket_path = UAPI_DIR / f"{name}.sock"
    deadline = time.monotonic() + _START_TIMEOUT
    while not socket_path.exists():
        if proc.returncode is not None or time.monotonic() > deadline:
            await _stop_userspace(proc)
            raise SetupError(f"wireguard-go did not create {socket_path} within {_START_TIMEOUT:.0f} s")
        await asyncio.sleep(0.02)
    return proc


async def _stop_userspace(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), _STOP_GRACE)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _latest_handshake(name: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "wg", "show", name, "latest-handshakes", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    output, _ = await proc.communicate()
    stamps = [int(line.split()[-1]) for line in output.decode().splitlines() if line.split()[-1:]]
    return max(stamps, default=0)


async def _received(name: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "wg", "show", name, "transfer", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    output, _ = await proc.communicate()
    return sum(int(line.split()[1]) for line in output.decode().splitlines() if len(line.split()) >= 3)


async def _first_handshake(name: str, limit: float) -> float | None:
    """Seconds until the first completed handshake, or None after ``limit`` seconds (bounded polling)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if await _latest_handshake(name):
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


async def _watch_peer(name: str, dead_after: float) -> None:
    """Returns when nothing has arrived from the peer (no byte received) for ``dead_after`` seconds."""
    last_bytes, last_change = await _received(name), time.monotonic()
    while True:
        await asyncio.sleep(min(2.0, dead_after / 4))
        now_bytes = await _received(name)
        if now_bytes != last_bytes:
            last_bytes, last_change = now_bytes, time.monotonic()
        elif time.monotonic() - last_change > dead_after:
            return


async def run(args: argparse.Namespace) -> int:
    name = args.name or f"plx{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    userspace: asyncio.subprocess.Process | None = None
    kernel = False
    try:
        kernel = args.userspace != "always" and await _try_kernel(name)
        if not kernel:
            if args.userspace == "never":
                raise SetupError("kernel WireGuard is not available (ip link add type wireguard failed)")
            userspace = await _start_userspace(name)
        await _run("ip", "address", "add", f"{args.address}/32", "peer", f"{args.peer_address}/32", "dev", name)
        await _run("ip", "link", "set", "dev", name, "mtu", str(args.mtu), "up")
        # Configure last: the first handshake initiation (keepalive) then leaves from an interface that is up;
        # sent earlier, it is lost and WireGuard retries only after 5 s.
        await _run("wg", "setconf", name, args.conf)
        print(READY_LINE.format(name=name, mode="kernel" if kernel else "wireguard-go"), flush=True)
        if args.first_handshake > 0:
            waited = await _first_handshake(name, args.first_handshake)
            if waited is None:
                print(f"plexus-wg: no handshake with the peer within {args.first_handshake:g} s; stopping "
                      "(the session is retried through a new punch)", flush=True)
                return EXIT_DEAD_PEER
            print(HANDSHAKE_LINE.format(seconds=waited), flush=True)
        return await _serve(name, stop, userspace, args.dead_after)
    except SetupError as exc:
        print(f"plexus-wg: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if userspace is not None:
            await _stop_userspace(userspace)  # wireguard-go removes its interface and socket itself
        if kernel:
            with contextlib.suppress(SetupError):
                await _run("ip", "link", "del", "dev", name)


async def _serve(
    name: str, stop: asyncio.Event, userspace: asyncio.subprocess.Process | None, dead_after: float
) -> int:
    waits: dict[asyncio.Task[object], str] = {asyncio.create_task(stop.wait()): "signal"}
    if userspace is not None:
        waits[asyncio.create_task(userspace.wait())] = "wireguard-go"
    if dead_after > 0:
        waits[asyncio.create_task(_watch_peer(name, dead_after))] = "dead"
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    reason = waits[next(iter(done))]
    if reason == "wireguard-go":
        print(f"plexus-wg: wireguard-go exited with {userspace.returncode if userspace else '?'}", flush=True)
        return 1
    if reason == "dead":
        print(f"plexus-wg: nothing from the peer for {dead_after:.0f} s; stopping", flush=True)
        return EXIT_DEAD_PEER
    print(f"plexus-wg: stopping {name}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plexus.launch.wg_up", description=__doc__.splitlines()[0])
    parser.add_argument("--conf", required=True, help="wg setconf file (PrivateKey, ListenPort, [Peer] ...)")
    parser.add_argument("--address", required=True, help="our tunnel address, e.g. 198.19.0.1")
    parser.add_argument("--peer-address", required=True, help="the peer's tunnel address, e.g. 198.19.0.2")
    parser.add_argument("--name", default=None, help="interface name (default plx<pid>)")
    parser.add_argument("--mtu", type=int, default=1420)
    parser.add_argument("--userspace", choices=["auto", "always", "never"], default="auto",
                        help="use wireguard-go: when the kernel has no WireGuard (auto), always, or never")
    parser.add_argument("--dead-after", type=float, default=0.0,
                        help="exit 3 after this many seconds without a packet from the peer (0 = never)")
    parser.add_argument("--first-handshake", type=float, default=0.0,
                        help="wait this long for the first handshake before saying ready; exit 3 if none (0 = "
                             "ready when the interface is up)")
    args = parser.parse_args(argv)
    if args.name is not None and not 1 <= len(args.name) <= 15:
        parser.error("--name must be 1..15 characters")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
