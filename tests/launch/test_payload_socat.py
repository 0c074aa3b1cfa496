"""The socat template, proved with real socat processes forwarding datagrams both ways between two namespaces."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netns import ADDRESS, NetnsPair, netns_pair, render_pair, require

APP_PORT, LISTEN_PORT = 5000, 5001
VARS = {"app_port": APP_PORT, "listen_port": LISTEN_PORT}

# A local "application": bind app_port, keep sending one datagram to socat's listen_port, print the first
# datagram that comes back from the other side, and keep sending a little longer so the other side gets ours
# even if it started later. Bounded: at most 80 x 0.1 s. Runs inside a namespace with the system python.
APP = f"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", {APP_PORT}))
s.settimeout(0.1)
message, received, extra = sys.argv[1].encode(), None, 10
for _ in range(80):
    s.sendto(message, ("127.0.0.1", {LISTEN_PORT}))
    try:
        data, _ = s.recvfrom(2048)
        if data != message:
            received = received or data
    except TimeoutError:
        pass
    if received is not None:
        extra -= 1
        if extra == 0:
            break
print(received.decode() if received else "", flush=True)
"""


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NetnsPair]:
    require("socat", "socat")
    with netns_pair("tpls", tmp_path) as built:
        yield built


def test_socat_forwards_datagrams_both_ways(pair: NetnsPair, tmp_path: Path) -> None:
    rendered = render_pair("socat", tmp_path, VARS, VARS)
    forwarders = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    time.sleep(0.2)
    for side, proc in forwarders.items():
        assert proc.poll() is None, f"socat on {side} exited: {pair.log(proc)}"
    # Each side's application sends its own message and must receive the other side's.
    apps = {
        side: subprocess.Popen(["ip", "netns", "exec", pair.ns(side), "python3", "-c", APP, f"hello from {side}"],
                               stdout=subprocess.PIPE, text=True)
        for side in ("a", "b")
    }
    received = {side: app.communicate(timeout=15)[0].strip() for side, app in apps.items()}
    assert received == {"a": "hello from b", "b": "hello from a"}, [pair.log(p) for p in forwarders.values()]


def test_socat_drops_datagrams_from_strangers(pair: NetnsPair, tmp_path: Path) -> None:
    rendered = render_pair("socat", tmp_path, VARS, VARS)
    forwarders = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    time.sleep(0.2)
    # A stranger address on b's side sends to a's punched port; a's application must not see it.
    pair.run("b", ["ip", "address", "add", "198.18.200.3/24", "dev", "tplsb0"])
    listener = subprocess.Popen(
        ["ip", "netns", "exec", pair.ns("a"), "timeout", "2", "socat", "-u", f"UDP4-RECV:{APP_PORT},bind=127.0.0.1",
         "STDOUT"], stdout=subprocess.PIPE)
    time.sleep(0.2)
    stranger = f"echo stranger | socat -u STDIN UDP4-SENDTO:{ADDRESS['a']}:40000,bind=198.18.200.3"
    sent = pair.run("b", ["sh", "-c", stranger], timeout=5)
    assert sent.returncode == 0, sent.stderr
    assert listener.communicate(timeout=5)[0] == b"", "a stranger's datagram reached the application"
    assert "refusing" in pair.log(forwarders["a"]), pair.log(forwarders["a"])
