"""The wireguard template, proved with its launcher and userspace wireguard-go between two namespaces."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.netns import NetnsPair, netns_pair, render_pair, require

from plexus.launch import keys
from plexus.launch.template import find_template
from plexus.launch.wg_up import EXIT_DEAD_PEER

TUNNEL = {"a": "198.19.0.1", "b": "198.19.0.2"}
VARS_A = {"tunnel": TUNNEL["a"], "remote_tunnel": TUNNEL["b"]}
VARS_B = {"tunnel": TUNNEL["b"], "remote_tunnel": TUNNEL["a"]}


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[NetnsPair]:
    require("wireguard-go", "wireguard-go")
    require("wg", "wireguard-tools")
    with netns_pair("tplw", tmp_path) as built:
        yield built


def _wait_ready(pair: NetnsPair, proc: subprocess.Popen[bytes], pattern: str, bound: float) -> str:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        match = re.search(pattern, pair.log(proc), re.MULTILINE)
        if match:
            return match.group(0)
        if proc.poll() is not None:
            pytest.fail(f"the wireguard launcher exited with {proc.returncode}: {pair.log(proc)}")
        time.sleep(0.02)
    pytest.fail(f"the wireguard launcher printed no ready line within {bound} s: {pair.log(proc)}")


def test_wireguard_tunnel_pings_across(pair: NetnsPair, tmp_path: Path) -> None:
    template = find_template("wireguard")
    assert template.ready is not None
    rendered = render_pair("wireguard", tmp_path, VARS_A, VARS_B)
    started = time.monotonic()
    procs = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    for side in ("a", "b"):
        _wait_ready(pair, procs[side], template.ready, bound=10)
    # wireguard-go 0.0.20220316 sometimes lets both sides' initiations cross for 25-45 s before one handshake
    # completes (seen in CI and in the lab; issue 14 makes plexus notice it): wait that long, not 15 s.
    took = pair.wait_ping("a", TUNNEL["b"], bound=45)
    assert took is not None, f"no ping across wireguard within 45 s: {[pair.log(p) for p in procs.values()]}"
    assert pair.ping("b", TUNNEL["a"])
    print(f"wireguard: start to first ping across {time.monotonic() - started:.2f} s")
    # The interface really is wireguard-go's, configured with the peer's key from its exports.
    name = re.search(r"interface (\S+) up \(wireguard-go\)", pair.log(procs["a"]))
    assert name, pair.log(procs["a"])
    shown = pair.run("a", ["wg", "show", name.group(1), "peers"]).stdout.split()
    expected_peer = re.search(r"PublicKey = (\S+)", rendered["a"].files["wg.conf"].read_text())
    assert expected_peer and shown == [expected_peer.group(1)]
    # SIGTERM removes the interface and its control socket.
    procs["a"].terminate()
    assert procs["a"].wait(timeout=8) == 0, pair.log(procs["a"])
    assert pair.run("a", ["ip", "link", "show", name.group(1)]).returncode != 0, "interface left behind"
    assert not Path(f"/var/run/wireguard/{name.group(1)}.sock").exists()


def test_wireguard_wrong_public_key_never_pings(pair: NetnsPair, tmp_path: Path) -> None:
    stranger = keys.wireguard_keypair()["public"]
    quick = {"dead_after": 2, "first_handshake": 2}  # seconds before the launcher gives up
    rendered = render_pair("wireguard", tmp_path, {**VARS_A, **quick}, {**VARS_B, **quick},
                           peer_values_override={"b": {"public_key": stranger}})
    procs = {side: pair.start(side, rendered[side].argv, rendered[side].env) for side in ("a", "b")}
    template = find_template("wireguard")
    assert template.ready is not None
    for side in ("a", "b"):  # the interface comes up, but ready (a completed handshake) never does
        _wait_ready(pair, procs[side], r"^plexus-wg: interface \S+ up", bound=10)
    assert pair.wait_ping("a", TUNNEL["b"], bound=1) is None, "wireguard tunnel up with a wrong key"
    # No handshake ever completes, so both launchers end with the dead-peer code and clean up.
    for side in ("a", "b"):
        assert procs[side].wait(timeout=5) == EXIT_DEAD_PEER, pair.log(procs[side])
        assert "no handshake with the peer within 2 s" in pair.log(procs[side])
        assert not re.search(template.ready, pair.log(procs[side]), re.MULTILINE), "ready without a handshake"
    leftover = pair.run("a", ["ip", "-o", "link", "show", "type", "tun"]).stdout
    assert "plx" not in leftover, leftover


def test_wireguard_go_dies_with_a_killed_launcher(pair: NetnsPair, tmp_path: Path) -> None:
    template = find_template("wireguard")
    assert template.ready is not None
    rendered = render_pair("wireguard", tmp_path, VARS_A, VARS_B)
    launcher = pair.start("a", rendered["a"].argv, rendered["a"].env)
    line = _wait_ready(pair, launcher, r"^plexus-wg: interface \S+ up", bound=10)  # alone: no handshake
    name = line.split()[2]
    launcher.kill()
    launcher.wait(timeout=5)
    deadline = time.monotonic() + 5
    while pair.run("a", ["ip", "link", "show", name]).returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pair.run("a", ["ip", "link", "show", name]).returncode != 0, "wireguard-go outlived its launcher"
