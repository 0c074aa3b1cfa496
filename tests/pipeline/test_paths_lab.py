"""Paths between NAT kinds in the lab: a symmetric NAT reaches a public peer directly, whichever side accepts,
and a peer behind an endpoint-independent NAT by probing. (Two symmetric NATs are refused:
tests/pipeline/test_up_e2e.py.)"""

from __future__ import annotations

import sys
from typing import Any

from support.up import events, launched, ping, up, wait_event


def connect(site_spawn: Any, acceptor: tuple[str, str], initiator: tuple[str, str]) -> tuple[Any, Any]:
    server = up(site_spawn, *acceptor)
    wait_event(server, "offer-received", "start")
    client = up(site_spawn, *initiator)
    for side in (client, server):
        wait_event(side, "payload", "info", timeout=30)
    return server, client


def test_symmetric_initiator_reaches_a_public_acceptor(lab: Any, lab_settings: Any, site_spawn: Any,
                                                       site_run: Any) -> None:
    lab_settings.set_nat("b", "none")
    bob, carol = connect(site_spawn, ("b", "alice"), ("c", "bob"))
    assert ping(site_run, "c", "198.19.0.2"), "no ping across the tunnel from carol"
    punch = wait_event(carol, "punch", "ok")
    assert punch["message"].startswith(f"handshake with {lab.public_address('b')}:")
    assert launched(bob) and launched(carol)


def test_symmetric_acceptor_reaches_a_public_initiator(lab: Any, lab_settings: Any, site_spawn: Any,
                                                       site_run: Any) -> None:
    lab_settings.set_nat("a", "none")
    lab_settings.set_nat("b", "symmetric")
    bob, _ = connect(site_spawn, ("b", "alice"), ("a", "bob"))
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
    assert any(e["phase"] == "nat" and "address-and-port-dependent" in e.get("message", "") for e in events(bob))


def test_a_single_ordinary_stun_server_is_enough_between_two_eim_sites(lab: Any, site_spawn: Any,
                                                                      site_run: Any) -> None:
    """One STUN server without RFC 5780 (most public ones): the mapping is unknown, and plexus tries direct."""
    from plexus.lab.topology import STUN_PLAIN

    plain = {"stun": {"servers": [f"{STUN_PLAIN[0]}:{STUN_PLAIN[1]}"]}}
    lab.write_profile("b", "alice-plain", **plain)
    lab.write_profile("a", "bob-plain", **plain)
    bob, alice = connect(site_spawn, ("b", "alice-plain"), ("a", "bob-plain"))
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
    for side in (alice, bob):
        assert wait_event(side, "nat", "ok")["message"].endswith("unknown mapping")
    report = site_run("a", [sys.executable, "-m", "plexus", "nat", "--server", f"{STUN_PLAIN[0]}:{STUN_PLAIN[1]}",
                            "--json"])
    assert "Traceback" not in report.stderr and report.returncode in (0, 3), report.stderr


def test_symmetric_initiator_reaches_an_eim_acceptor_by_probing(lab: Any, site_spawn: Any, site_run: Any) -> None:
    """carol (symmetric, site c) and bob (endpoint-independent, drops unsolicited packets): carol races 256 sockets,
    bob sprays probes at random ports of carol's NAT; one meets, the tunnel comes up."""
    bob, carol = connect(site_spawn, ("b", "alice"), ("c", "bob"))
    assert ping(site_run, "c", "198.19.0.2"), "no ping across the tunnel from carol"
    for side in (bob, carol):
        punch = wait_event(side, "punch", "ok")
        assert punch["data"]["path"] == "probed", punch


def test_symmetric_acceptor_reaches_an_eim_initiator_by_probing(lab: Any, lab_settings: Any, site_spawn: Any,
                                                                 site_run: Any) -> None:
    lab_settings.set_nat("b", "symmetric")
    bob, _ = connect(site_spawn, ("b", "alice"), ("a", "bob"))
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
    assert wait_event(bob, "punch", "ok")["data"]["path"] == "probed"
