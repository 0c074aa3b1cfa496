"""The openvpn template, proved with two real openvpn processes between two namespaces joined by a veth pair."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netns import NetnsPair, netns_pair, render_pair, require

from plexus.launch import keys
from plexus.launch.template import find_template

TUNNEL = {"a": "198.19.0.1", "b": "198.19.0.2"}
VARS_A = {"tunnel": TUNNEL["a"], "remote_tunnel": TUNNEL["b"]}
VARS_B = {"tunnel": TUNNEL["b"], "remote_tunnel": TUNNEL["a"]}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NetnsPair]:
    require("openvpn", "openvpn")
    with netns_pair("tplo", tmp_path) as built:
        yield built


def test_openvpn_tunnel_pings_across(pair: NetnsPair, tmp_path: Path) -> None:
    rendered = render_pair("openvpn", tmp_path, VARS_A, VARS_B)
    started = time.monotonic()
    procs = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    took = pair.wait_ping("a", TUNNEL["b"], bound=15)
    logs = {side: pair.log(proc) for side, proc in procs.items()}
    assert took is not None, f"no ping across the openvpn tunnel within 15 s; logs: {logs}"
    assert pair.ping("b", TUNNEL["a"]), "the tunnel answers one way only"
    for side in ("a", "b"):
        assert procs[side].poll() is None, f"openvpn on {side} exited: {logs[side]}"
        assert "Initialization Sequence Completed" in pair.log(procs[side])  # the template's ready line
    print(f"openvpn: start to first ping across {time.monotonic() - started:.2f} s")


def test_openvpn_wrong_fingerprint_never_pings(pair: NetnsPair, tmp_path: Path) -> None:
    stranger = keys.self_signed_cert()["fingerprint"]  # b expects some other certificate than a's
    rendered = render_pair("openvpn", tmp_path, VARS_A, VARS_B,
                           peer_values_override={"b": {"fingerprint": stranger}})
    template = find_template("openvpn")
    procs = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    assert pair.wait_ping("a", TUNNEL["b"], bound=5) is None, "a tunnel came up with a wrong fingerprint"
    log_b = pair.log(procs["b"])
    assert "verification failed" in log_b, log_b
    assert "Initialization Sequence Completed" not in log_b + pair.log(procs["a"])
    # tls-exit: the side that refused the certificate ends (with code 0, so the template's `failure` pattern
    # is what tells plexus it failed), instead of retrying forever.
    procs["b"].wait(timeout=5)
    assert template.failure is not None and re.search(template.failure, pair.log(procs["b"])), log_b


def test_openvpn_dead_peer_ends_the_process(pair: NetnsPair, tmp_path: Path) -> None:
    # ping-exit: when the peer vanishes, openvpn ends, so the restart policy can punch a new path.
    quick = {"ping_exit": 3}
    rendered = render_pair("openvpn", tmp_path, {**VARS_A, **quick}, {**VARS_B, **quick})
    procs = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    assert pair.wait_ping("a", TUNNEL["b"], bound=15) is not None, pair.log(procs["a"])
    procs["a"].kill()  # no goodbye packet: the peer just disappears
    procs["a"].wait(timeout=5)
    procs["b"].wait(timeout=10)
    template = find_template("openvpn")
    assert template.failure is not None and re.search(template.failure, pair.log(procs["b"])), pair.log(procs["b"])
