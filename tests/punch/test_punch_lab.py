"""The handshake across the lab's real NATs when exactly its last packets are lost: an iptables rule in alice's
host matches the initiator's ACK by the packet magic and drops the first four (all the ACKs an initiator used to
send before the acceptor's DONE existed, which left the acceptor punching alone: a half-open handshake)."""

from __future__ import annotations

import re
from typing import Any

from support.up import launched, ping, up, wait_event

INITIATOR_ACK = "|504c58500103|"  # "PLXP", version 1, flags: ACK from the initiator
ACK_DATAGRAM = 20 + 8 + 34  # IPv4 + UDP headers + a handshake packet: the bytes iptables' quota counts
RULE = ["OUTPUT", "-p", "udp", "-m", "string", "--algo", "bm", "--hex-string", INITIATOR_ACK,
        "-m", "quota", "--quota", str(4 * ACK_DATAGRAM), "-j", "DROP"]


def test_lost_final_acks_leave_no_half_open_handshake(lab: Any, site_spawn: Any, site_run: Any) -> None:
    added = site_run("a", ["iptables", "-I", *RULE])
    assert added.returncode == 0, added.stderr
    try:
        bob = up(site_spawn, "b", "alice")
        wait_event(bob, "offer-received", "start")
        alice = up(site_spawn, "a", "bob")
        for side in (alice, bob):
            wait_event(side, "punch", "ok", timeout=30)
            wait_event(side, "payload", "info", timeout=30)
        assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
        assert len(launched(bob)) >= 1 and len(launched(alice)) >= 1
        listing = site_run("a", ["iptables", "-L", "OUTPUT", "-v", "-x", "-n"]).stdout
        counts = [int(match) for match in re.findall(r"^\s*(\d+)\s+\d+\s+DROP.*504c58500103", listing, re.M)]
        assert counts == [4], listing  # the rule did drop the initiator's first four ACKs
    finally:
        site_run("a", ["iptables", "-D", *RULE])
