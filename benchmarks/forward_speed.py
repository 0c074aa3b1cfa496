"""TCP through the built-in `forward` payload (QUIC on the punched port, no root) beside the `openvpn` and
`wireguard` tunnels between the same two lab sites (a -> b, both endpoint-independent NATs), in one lab run:

- iperf3 TCP throughput, 1 and 8 streams (through forward: `-L 5202:127.0.0.1:5201` to an iperf3 server on b);
- the round trip of a small request/response (64 bytes echoed, 200 times, median and p95) through each: what
  forward adds is its median minus the kernel tunnels' (and their ping RTT is printed beside);
- the resident memory (VmRSS) of the initiator's plexus with 100 open forwarded connections.

    sudo python3 benchmarks/forward_speed.py [--seconds 5] [--keep]

Builds its own lab (``fwdbench`` unless PLEXUS_LAB_NAME is set). Prints a table, then one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from stats import percentile, ping_rtt  # benchmarks/stats.py (scripts: their folder is on sys.path)

from plexus.lab import Lab

PLEXUS = [sys.executable, "-m", "plexus", "-q"]
ECHO_SERVER = """
import socket, threading
server = socket.create_server(("{host}", {port}), backlog=256)
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""
ECHO_CLIENT = """
import json, socket, sys, time
rtts = []
with socket.create_connection(("{host}", {port}), timeout=10) as conn:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(220):
        started = time.perf_counter()
        conn.sendall(b"x" * 64)
        got = b""
        while len(got) < 64:
            got += conn.recv(64 - len(got))
        rtts.append(time.perf_counter() - started)
print(json.dumps(rtts[20:]))
"""
HOLD_CLIENT = """
import socket, sys, time
conns = [socket.create_connection(("{host}", {port}), timeout=10) for _ in range(100)]
for conn in conns:
    conn.sendall(b"hello")
    assert conn.recv(5) == b"hello"
print("open", flush=True)
time.sleep(30)
"""


def iperf(lab: Lab, host: str, port: int, seconds: int, streams: int) -> float | None:
    done = lab.run("a", ["iperf3", "-c", host, "-p", str(port), "-t", str(seconds), "-P", str(streams), "-J"],
                   timeout=seconds + 30)
    try:
        return round(json.loads(done.stdout)["end"]["sum_received"]["bits_per_second"] / 1e6, 1)
    except (ValueError, KeyError):
        return None


def echo_rtts(lab: Lab, host: str, port: int) -> dict[str, float] | None:
    done = lab.run("a", [sys.executable, "-c", ECHO_CLIENT.format(host=host, port=port)], timeout=60)
    try:
        rtts = json.loads(done.stdout)
    except ValueError:
        return None
    return {"median_ms": round(percentile(rtts, 0.5) * 1000, 3), "p95_ms": round(percentile(rtts, 0.95) * 1000, 3)}


def wait_ping(lab: Lab, address: str, limit: float = 60) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if lab.run("a", ["ping", "-c1", "-W1", address], timeout=5).returncode == 0:
            return True
    return False


def wait_port(lab: Lab, port: int, limit: float = 60) -> bool:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if lab.run("a", [sys.executable, "-c", probe], timeout=5).returncode == 0:
            return True
        time.sleep(0.2)
    return False


def rss_mb(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", text)
    return round(int(found.group(1)) / 1024, 1) if found else None


def measure(lab: Lab, name: str, acceptor: str, initiator: list[str], host: str, port: int, echo_port: int,
            seconds: int) -> dict[str, Any]:
    bob = lab.spawn("b", [*PLEXUS, "up", acceptor, "--json"], stdout=subprocess.DEVNULL)
    time.sleep(1.5)
    alice = lab.spawn("a", [*PLEXUS, "up", *initiator, "--json"], stdout=subprocess.DEVNULL)
    result: dict[str, Any] = {"path": name}
    try:
        ready = wait_port(lab, port) if host == "127.0.0.1" else wait_ping(lab, host)
        if not ready:
            return {**result, "error": "never ready"}
        time.sleep(0.5)
        result["mbit_s_1_stream"] = iperf(lab, host, port, seconds, 1)
        result["mbit_s_8_streams"] = iperf(lab, host, port, seconds, 8)
        result["echo_rtt"] = echo_rtts(lab, host, echo_port)
        if name == "forward":
            holder = lab.spawn("a", [sys.executable, "-c", HOLD_CLIENT.format(host=host, port=echo_port)])
            assert holder.stdout is not None
            line = holder.stdout.readline()
            result["rss_mb_100_streams"] = rss_mb(alice.pid) if "open" in line else None
            lab.stop(holder)
        else:
            result["ping_rtt_ms"] = ping_rtt(lab, "a", host)
    finally:
        lab.stop(alice)
        lab.stop(bob)
        time.sleep(1.0)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 duration per measurement")
    parser.add_argument("--keep", action="store_true", help="leave the lab up")
    args = parser.parse_args()
    lab = Lab.up(os.environ.get("PLEXUS_LAB_NAME") or "fwdbench", force=True)
    servers = []
    try:
        forward_vars = {"payload": {"vars": {"expose": ["127.0.0.1:5201", "127.0.0.1:7000"]}}}
        lab.write_profile("b", "alice-fwd", template="forward", authentication="psk", **forward_vars)
        lab.write_profile("a", "bob-fwd", template="forward", authentication="psk")
        lab.write_profile("b", "alice-wg", template="wireguard")
        lab.write_profile("a", "bob-wg", template="wireguard")
        servers = [lab.spawn("b", ["iperf3", "-s", "-B", "0.0.0.0", "-p", "5201"], stdout=subprocess.DEVNULL),
                   lab.spawn("b", [sys.executable, "-c", ECHO_SERVER.format(host="0.0.0.0", port=7000)])]
        time.sleep(0.5)
        results = [
            measure(lab, "forward", "alice-fwd", ["bob-fwd", "-L", "5202:127.0.0.1:5201", "-L",
                                                   "7001:127.0.0.1:7000"], "127.0.0.1", 5202, 7001, args.seconds),
            measure(lab, "openvpn", "alice", ["bob"], "198.19.0.2", 5201, 7000, args.seconds),
            measure(lab, "wireguard", "alice-wg", ["bob-wg"], "198.19.0.2", 5201, 7000, args.seconds),
        ]
    finally:
        for server in servers:
            lab.stop(server)
        if not args.keep:
            lab.down()
    by_path = {r["path"]: r for r in results}
    print(f"{'path':<10} {'1 stream':>12} {'8 streams':>12} {'echo median':>12} {'echo p95':>10}")
    for r in results:
        echo = r.get("echo_rtt") or {}
        print(f"{r['path']:<10} {r.get('mbit_s_1_stream')!s:>7} Mb/s {r.get('mbit_s_8_streams')!s:>7} Mb/s "
              f"{echo.get('median_ms')!s:>9} ms {echo.get('p95_ms')!s:>7} ms")
    summary: dict[str, Any] = {"results": results}
    forward, openvpn, wireguard = by_path.get("forward", {}), by_path.get("openvpn", {}), by_path.get("wireguard", {})
    if forward.get("mbit_s_1_stream") and openvpn.get("mbit_s_1_stream"):
        summary["forward/openvpn throughput, 1 stream"] = round(forward["mbit_s_1_stream"] /
                                                                openvpn["mbit_s_1_stream"], 2)
    if forward.get("mbit_s_8_streams") and openvpn.get("mbit_s_8_streams"):
        summary["forward/openvpn throughput, 8 streams"] = round(forward["mbit_s_8_streams"] /
                                                                 openvpn["mbit_s_8_streams"], 2)
    for other in (openvpn, wireguard):
        if (forward.get("echo_rtt") or {}).get("median_ms") is not None and (other.get("echo_rtt") or {}).get(
                "median_ms") is not None:
            summary[f"latency forward adds over {other['path']} (echo medians), ms"] = round(
                forward["echo_rtt"]["median_ms"] - other["echo_rtt"]["median_ms"], 3)
    summary["rss_mb_100_streams"] = forward.get("rss_mb_100_streams")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
