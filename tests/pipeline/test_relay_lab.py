"""The relay path in the lab, through the lab's real coturn (TURN, long-term credentials and a REST shared
secret): two symmetric NATs connect through it, a failed direct punch falls back to it, policy always uses it,
and it fails cleanly with wrong credentials. The allocation is gone once plexus exits."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from support.up import PLEXUS, events, launched, ping, up, wait_event

from plexus.lab import turn


def connect(site_spawn: Any, acceptor: tuple[str, str], initiator: tuple[str, str],
            timeout: float = 40) -> tuple[Any, Any]:
    server = up(site_spawn, *acceptor)
    wait_event(server, "offer-received", "start")
    client = up(site_spawn, *initiator)
    for side in (client, server):
        wait_event(side, "payload", "info", timeout=timeout)
    return server, client


def settled_allocations(lab: Any) -> int:
    """The TURN server's live allocations once the releases of earlier tests have been logged."""
    count = turn.allocations(lab)
    for _ in range(20):
        time.sleep(0.5)
        now = turn.allocations(lab)
        if now == count:
            return now
        count = now
    return count


def relayed_punches(process: Any) -> list[dict[str, Any]]:
    return [e for e in events(process) if e["phase"] == "punch" and e["status"] == "ok"
            and e["data"].get("path") == "relayed"]


def allocation_of(*sides: Any) -> tuple[Any, tuple[str, int], Any]:
    """The side that allocated (exactly one does), its relayed address, and the other side."""
    holders = [side for side in sides if any(e["phase"] == "relay" and e["status"] == "ok" for e in events(side))]
    assert len(holders) == 1, f"{len(holders)} sides allocated; only one should"
    holder = holders[0]
    event = next(e for e in events(holder) if e["phase"] == "relay" and e["status"] == "ok")
    other = next(side for side in sides if side is not holder)
    return holder, tuple(event["data"]["relayed"]), other  # type: ignore[return-value]


def test_two_symmetric_nats_tunnel_through_the_relay(lab: Any, lab_settings: Any, site_spawn: Any,
                                                     site_run: Any) -> None:
    """carol and bob both behind symmetric NATs: carol (hard, so she allocates before inviting) puts her relayed
    address in the invite, bob sends straight to it; openvpn comes up and a ping crosses; the allocation is
    released on exit."""
    lab_settings.set_nat("b", "symmetric")
    before = settled_allocations(lab)
    bob, carol = connect(site_spawn, ("b", "alice"), ("c", "bob"))
    assert ping(site_run, "c", "198.19.0.2"), "no ping across the relayed tunnel from carol"
    for side in (bob, carol):
        assert relayed_punches(side), f"not relayed:\n{side.output()[-3000:]}"
    holder, relayed, other = allocation_of(bob, carol)
    assert holder is carol and relayed[0] == lab.turn_server[0]
    assert wait_event(other, "punch", "ok")["message"].startswith(f"handshake with {relayed[0]}:{relayed[1]}")
    assert turn.allocations(lab) == before + 1
    carol.stop(), bob.stop()
    turn.wait_allocations(lab, before, timeout=10)


def test_a_stranger_sending_to_the_relayed_address_changes_nothing(lab: Any, lab_settings: Any, site_spawn: Any,
                                                                   site_run: Any) -> None:
    """alice (site a) floods bob's relayed address while bob and carol are connected through it: the TURN server
    has no permission for her, nothing new launches and the tunnel still carries pings."""
    lab_settings.set_nat("b", "symmetric")
    bob, carol = connect(site_spawn, ("b", "alice"), ("c", "bob"))
    _, (host, port), _ = allocation_of(bob, carol)
    flood = ("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             f"for i in range(300): s.sendto(b'PX' + bytes(60), ({host!r}, {port}))\n")
    assert site_run("a", [sys.executable, "-c", flood]).returncode == 0
    assert ping(site_run, "c", "198.19.0.2"), "the tunnel stopped carrying pings"
    launches = [e for e in events(bob) if e["phase"] == "launch" and e["status"] == "ok"]
    assert len(launches) == 1 and launched(carol)


def test_relayed_wireguard_handshake_and_ping(lab: Any, lab_settings: Any, site_spawn: Any, site_run: Any) -> None:
    lab_settings.set_nat("b", "symmetric")
    lab.write_profile("b", "alice-wg", template="wireguard")
    lab.write_profile("c", "bob-wg", template="wireguard")
    bob, carol = connect(site_spawn, ("b", "alice-wg"), ("c", "bob-wg"), timeout=45)
    assert ping(site_run, "c", "198.19.0.2", attempts=150), "no ping through WireGuard over the relay"
    shown = site_run("b", ["wg", "show", "all", "latest-handshakes"])
    assert shown.returncode == 0 and any(int(line.split()[-1]) > 0 for line in shown.stdout.splitlines()), \
        shown.stdout
    assert relayed_punches(bob) and relayed_punches(carol)
    server = site_spawn("b", ["iperf3", "-s", "-1", "-B", "198.19.0.2"])
    time.sleep(0.5)
    done = site_run("c", ["iperf3", "-c", "198.19.0.2", "-t", "1", "-J"], timeout=30)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    received = json.loads(done.stdout)["end"]["sum_received"]
    assert received["bytes"] > 1_000_000, received  # TCP through WireGuard through the relay
    server.wait(timeout=10)


def test_rest_shared_secret_credentials(lab: Any, lab_settings: Any, site_spawn: Any, site_run: Any) -> None:
    """bob's relay uses the TURN REST scheme (a time-limited username derived from the shared secret)."""
    lab_settings.set_nat("b", "symmetric")
    lab.write_profile("b", "alice-rest", relay_auth="rest")
    lab.write_profile("c", "bob-norelay", relay=None)
    bob, _ = connect(site_spawn, ("b", "alice-rest"), ("c", "bob-norelay"))
    assert wait_event(bob, "relay", "ok")["data"]["server"].endswith(str(lab.turn_rest_server[1])), \
        "carol has no relay of her own here, so bob allocates, with REST credentials"
    assert ping(site_run, "c", "198.19.0.2")


def test_policy_always_relays_between_two_easy_nats(lab: Any, site_spawn: Any, site_run: Any) -> None:
    lab.write_profile("a", "bob-relayed", relay={"policy": "always"})
    bob, alice = connect(site_spawn, ("b", "alice"), ("a", "bob-relayed"))
    assert ping(site_run, "a", "198.19.0.2")
    assert relayed_punches(alice) and relayed_punches(bob)
    assert wait_event(alice, "relay", "ok"), "policy always: the initiator allocates before it invites"
    assert not [e for e in events(bob) if e["phase"] == "relay"]


def test_a_failed_direct_punch_falls_back_to_the_relay(lab: Any, lab_settings: Any, site_spawn: Any) -> None:
    """Full-TTL opening packets between two bare NATs make the direct punch fail (conntrack clash,
    test_up_e2e.py); with a relay the initiator asks again for the relayed path and connects."""
    lab_settings.set_nat("a", "eim-bare")
    lab_settings.set_nat("b", "eim-bare")
    quick = {"template": "exec", "payload": {"vars": {"command": "true"}}, "punch": {"timeout": "4s", "hops": 64}}
    lab.write_profile("b", "alice-bare", **quick)
    lab.write_profile("a", "bob-bare", **quick)
    bob = up(site_spawn, "b", "alice-bare")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-bare")
    assert alice.wait(timeout=40) == 0, alice.output()[-3000:]
    assert any(e["phase"] == "punch" and e["status"] == "warn" and "trying the relay" in e["message"]
               for e in events(alice))
    assert relayed_punches(alice)


def test_wrong_relay_credentials_one_line_and_nothing_launched(lab: Any, lab_settings: Any,
                                                               site_spawn: Any) -> None:
    """carol must relay (policy always) with a wrong TURN password: one line naming the server and the refusal,
    exit 5, no traceback, nothing launched, no allocation left."""
    before = settled_allocations(lab)
    lab.write_profile("c", "bob-wrong", relay={"policy": "always", "servers": [
        {"url": f"turn:{lab.turn_server[0]}:{lab.turn_server[1]}", "username": "carol",
         "password": {"env": "PLEXUS_WRONG_TURN"}}]})
    carol = site_spawn("c", [*PLEXUS, "up", "bob-wrong"], env={"PLEXUS_WRONG_TURN": "nope"})
    assert carol.wait(timeout=30) == 5, carol.output()[-3000:]
    output = carol.output()
    assert "Traceback" not in output
    line = next(line for line in output.splitlines() if "refused our credentials" in line)
    assert f"turn:{lab.turn_server[0]}:{lab.turn_server[1]}" in line and "nope" not in output
    assert not launched(carol)
    assert settled_allocations(lab) <= before


def test_two_symmetric_nats_without_a_relay_are_refused(lab: Any, lab_settings: Any, site_spawn: Any) -> None:
    """No relay on either side: bob refuses, saying why; carol exits 3 (a NAT refusal); nothing launches."""
    lab_settings.set_nat("b", "symmetric")
    lab.write_profile("b", "alice-direct", relay=None)
    lab.write_profile("c", "bob-direct", relay=None)
    bob = up(site_spawn, "b", "alice-direct")
    wait_event(bob, "offer-received", "start")
    carol = up(site_spawn, "c", "bob-direct")
    assert carol.wait(timeout=20) == 3
    assert "no direct path between bob (address-and-port-dependent mapping) and carol" in carol.output(), \
        carol.output()[-2000:]
    assert "neither bob nor carol has a TURN relay configured" in carol.output()
    refusal = wait_event(bob, "session", "fail", timeout=10)
    assert refusal["peer"] == "carol" and refusal["message"].startswith("no direct path"), refusal
    assert not launched(carol) and not launched(bob)
