"""The built-in forward payload in the lab, as a normal user on both sides (``plexus-lab``, no capabilities): ssh
to b's sshd through -L, curl through -L and -R, 100 concurrent connections, a 256 MB transfer checked by sha256,
a target b does not expose refused, the peer killed (clients see EOF or a reset, not a hang) and the forward
back after the restart."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import pytest
from support.up import PLEXUS, events, wait_event

from plexus.lab import users

USER = users.LAB_USER
HTTP = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]
CLIENT = """
import hashlib, os, socket, sys, threading
port, mode = int(sys.argv[1]), sys.argv[2]
if mode == "many":  # 100 connections at once, each echoing its own bytes
    errors = []
    def one(i):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
                data = (b"%03d" % i) * 1000
                c.sendall(data); c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(65536): got += chunk
                assert got == data, (i, len(got))
        except Exception as error:
            errors.append(repr(error))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
    [t.start() for t in threads]; [t.join() for t in threads]
    print("errors", len(errors), errors[:3])
elif mode == "bulk":  # 256 MB out, the far side answers the sha256 of what it got
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(b"SHA")  # tells the server to hash, not echo
        block = os.urandom(1 << 20)
        for i in range(256):
            chunk = bytes([i]) + block[1:]
            digest.update(chunk); c.sendall(chunk)
        c.shutdown(socket.SHUT_WR)
        answer = c.recv(100).decode()
    print("match" if answer == digest.hexdigest() else f"mismatch {answer}")
elif mode == "hold":  # connect, then wait for the end of the connection
    with socket.create_connection(("127.0.0.1", port), timeout=60) as c:
        c.sendall(b"hello"); assert c.recv(5) == b"hello"
        print("open", flush=True)
        try:
            print("eof" if c.recv(10) == b"" else "data", flush=True)
        except ConnectionResetError:
            print("reset", flush=True)
"""
SERVER = """
import hashlib, socket, sys, threading
server = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=256)
def serve(c):
    with c:
        first = c.recv(65536)
        if first.startswith(b"SHA"):  # bulk: hash everything after the marker
            digest = hashlib.sha256(first[3:])
            while chunk := c.recv(1 << 20): digest.update(chunk)
            c.sendall(digest.hexdigest().encode()); return
        c.sendall(first)
        while chunk := c.recv(65536): c.sendall(chunk)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


@pytest.fixture
def forward(lab: Any, site_spawn: Any, reachable: None) -> Any:
    """``forward(*flags, acceptor_vars=None)``: bob-side acceptor and alice-side initiator as the lab user,
    both ready; returns (bob, alice)."""

    def start(*flags: str, bob_profile: str = "alice-forward", alice_profile: str = "bob-forward",
              site: str = "a") -> Any:
        bob = site_spawn("b", [*PLEXUS, "up", bob_profile, "--json"], user=USER)
        wait_event(bob, "offer-received", "start", timeout=20)
        alice = site_spawn(site, [*PLEXUS, "up", alice_profile, "--json", *flags], user=USER)
        for side in (alice, bob):
            wait_ready(side)
        return bob, alice

    return start


def wait_ready(side: Any, timeout: float = 30.0) -> None:
    """Until the forward payload says ready (QUIC up, the peer's certificate pinned)."""
    deadline = time.monotonic() + timeout
    while not any(e["phase"] == "payload" and e["message"] == "ready" for e in events(side)):
        assert time.monotonic() < deadline and side.returncode is None, side.output()[-3000:]
        time.sleep(0.05)


def wait_port(site_run: Any, site: str, port: int) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"
    for _ in range(50):
        if site_run(site, [sys.executable, "-c", probe], user=USER).returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} in site {site}")


def test_ssh_and_curl_through_local_and_remote_forwards(lab: Any, forward: Any, site_spawn: Any,
                                                        site_run: Any) -> None:
    site_spawn("b", [*HTTP, "8080"], user=USER, env={"PYTHONDONTWRITEBYTECODE": "1"})
    site_spawn("a", [*HTTP, "8000"], user=USER)
    wait_port(site_run, "b", 8080), wait_port(site_run, "a", 8000)
    bob, alice = forward("-L", "2222:127.0.0.1:22", "-L", "8081:127.0.0.1:8080", "-R", "9000:127.0.0.1:8000",
                         "-L", "2223:127.0.0.1:23")
    ssh = site_run("a", lab.ssh_command("echo", "through-quic", port=2222), user=USER, timeout=30)
    assert ssh.returncode == 0 and ssh.stdout.strip() == "through-quic", ssh.stderr[-2000:]
    page = site_run("a", ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:8081/"], user=USER)
    assert page.returncode == 0 and "Directory listing" in page.stdout, page.stderr
    wait_port(site_run, "b", 9000)  # bob listens for alice's -R
    back = site_run("b", ["curl", "-sS", "--max-time", "10", "http://127.0.0.1:9000/"], user=USER)
    assert back.returncode == 0 and "Directory listing" in back.stdout, back.stderr
    refused = site_run("a", ["curl", "-sS", "--max-time", "10", "telnet://127.0.0.1:2223"], user=USER,
                       input="")
    assert refused.returncode != 0 or refused.stdout == ""
    deadline = time.monotonic() + 10
    while not any(e["status"] == "warn" and "127.0.0.1:23" in e["message"] for e in events(bob)):
        assert time.monotonic() < deadline, "bob did not log the refused target"
        time.sleep(0.1)
    launch = wait_event(alice, "launch", "ok")
    assert "in plexus" in launch["message"]


def test_a_hundred_connections_and_256_mb(lab: Any, forward: Any, site_spawn: Any, site_run: Any) -> None:
    lab.write_profile("b", "alice-forward-echo", template="forward", authentication="psk",
                      payload={"vars": {"expose": ["127.0.0.1:7000"]}})
    site_spawn("b", [sys.executable, "-c", SERVER, "7000"], user=USER)
    wait_port(site_run, "b", 7000)
    forward("-L", "7001:127.0.0.1:7000", bob_profile="alice-forward-echo")
    many = site_run("a", [sys.executable, "-c", CLIENT, "7001", "many"], user=USER, timeout=120)
    assert many.stdout.startswith("errors 0 "), many.stdout + many.stderr[-2000:]
    bulk = site_run("a", [sys.executable, "-c", CLIENT, "7001", "bulk"], user=USER, timeout=240)
    assert bulk.stdout.strip() == "match", bulk.stdout + bulk.stderr[-2000:]


def test_the_peer_killed_ends_connections_and_the_forward_comes_back(lab: Any, forward: Any, site_spawn: Any,
                                                                     site_run: Any) -> None:
    fast = {"payload": {"vars": {"expose": ["127.0.0.1:7000"], "idle_timeout": 4, "ping_interval": 1}}}
    lab.write_profile("b", "alice-forward-fast", template="forward", authentication="psk", **fast)
    lab.write_profile("a", "bob-forward-fast", template="forward", authentication="psk",
                      payload={"vars": {"idle_timeout": 4, "ping_interval": 1}, "restart": "on-failure",
                               "restart_delay": "1s"})
    site_spawn("b", [sys.executable, "-c", SERVER, "7000"], user=USER)
    wait_port(site_run, "b", 7000)
    bob, alice = forward("-L", "7001:127.0.0.1:7000", bob_profile="alice-forward-fast",
                         alice_profile="bob-forward-fast")
    holder = site_spawn("a", [sys.executable, "-c", CLIENT, "7001", "hold"], user=USER)
    holder.wait_for("open", timeout=15)
    os.kill(bob.pid, signal.SIGKILL)  # bob is gone without a goodbye: only alice's idle timeout can tell
    deadline = time.monotonic() + 20
    while not any(word in holder.output() for word in ("eof", "reset")):
        assert time.monotonic() < deadline, f"the client hangs: {holder.output()}"
        time.sleep(0.1)
    bob_again = site_spawn("b", [*PLEXUS, "up", "alice-forward-fast", "--json"], user=USER)
    wait_ready(bob_again, timeout=40)
    restarted = [e for e in events(alice) if e["phase"] == "launch" and e["status"] == "info" and "restart" in
                 e["message"]]
    assert restarted, alice.output()[-3000:]
    again = site_run("a", [sys.executable, "-c", CLIENT, "7001", "many"], user=USER, timeout=120)
    assert again.stdout.startswith("errors 0 "), again.stdout + alice.output()[-2000:]


def test_ssh_through_a_forward_over_the_relay(lab: Any, lab_settings: Any, forward: Any, site_run: Any) -> None:
    """carol (site c) and bob both behind symmetric NATs: the forward runs over the TURN relay unchanged."""
    lab_settings.set_nat("b", "symmetric")
    _, carol = forward("-L", "2222:127.0.0.1:22", site="c")
    assert any(e["phase"] == "punch" and e["status"] == "ok" and e["data"]["path"] == "relayed"
               for e in events(carol)), carol.output()[-3000:]
    ssh = site_run("c", lab.ssh_command("echo", "over-the-relay", port=2222), user=USER, timeout=30)
    assert ssh.returncode == 0 and ssh.stdout.strip() == "over-the-relay", ssh.stderr[-2000:]
