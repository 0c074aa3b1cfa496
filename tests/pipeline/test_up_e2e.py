"""`plexus up` end to end in the lab: real NATs, the real STUN and mail servers, real payloads."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import pytest
from support.up import events, launched, ping, up, wait_event


def test_openvpn_tunnel_between_two_nats(lab: Any, site_spawn: Any, site_run: Any) -> None:
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob")
    for side in (alice, bob):
        wait_event(side, "payload", "info", timeout=30)  # openvpn: "Initialization Sequence Completed"
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
    assert ping(site_run, "b", "198.19.0.1"), "no ping across the tunnel from bob"
    # the peers met at each other's NAT outside addresses, not at private ones
    assert wait_event(alice, "punch", "ok")["message"].startswith(f"handshake with {lab.public_address('b')}:")
    # Ctrl-C: plexus passes it on to openvpn, removes its run directory and exits; nothing stays behind
    payload_pid = wait_event(alice, "launch", "ok")["data"]["pid"]
    os.kill(alice.pid, signal.SIGINT)
    assert alice.wait(timeout=10) == 130
    assert not os.path.exists(f"/proc/{payload_pid}"), "openvpn still runs after plexus was interrupted"
    assert "stopped by SIGINT" in alice.output()


def test_wireguard_tunnel_between_two_nats(lab: Any, site_spawn: Any, site_run: Any) -> None:
    """wireguard-go configured with the peer's public key from the authenticated offer; ping across."""
    lab.write_profile("b", "alice-wg", template="wireguard")
    lab.write_profile("a", "bob-wg", template="wireguard")
    bob = up(site_spawn, "b", "alice-wg")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-wg")
    for side in (alice, bob):
        wait_event(side, "payload", "info", timeout=30)
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the WireGuard tunnel from alice"
    assert ping(site_run, "b", "198.19.0.1"), "no ping across the WireGuard tunnel from bob"


def test_socat_forwards_datagrams_both_ways(lab: Any, site_spawn: Any, site_run: Any, tmp_path: Any) -> None:
    socat_vars = {"listen_port": 7001, "app_port": 7002}
    lab.write_profile("b", "alice-socat", template="socat", payload={"vars": socat_vars})
    lab.write_profile("a", "bob-socat", template="socat", payload={"vars": socat_vars})
    bob = up(site_spawn, "b", "alice-socat")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-socat")
    wait_event(alice, "launch", "ok"), wait_event(bob, "launch", "ok")
    # each side's application: receive on app_port, send to listen_port (socat carries it across)
    # each keeps sending for a while after it has heard the other, so neither stops before the other hears it
    script = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('127.0.0.1',7002));"
              "s.settimeout(0.1); heard=0\n"
              "for i in range(100):\n"
              "    s.sendto(sys.argv[1].encode(),('127.0.0.1',7001))\n"
              "    try:\n"
              "        d,_=s.recvfrom(100)\n"
              "        if not heard: print(d.decode(), flush=True)\n"
              "        heard+=1\n"
              "    except TimeoutError: pass\n"
              "    if heard>10: break\n")
    b_app = site_spawn("b", [sys.executable, "-c", script, "from-bob"])
    a_app = site_spawn("a", [sys.executable, "-c", script, "from-alice"])
    assert a_app.wait_for("from-bob", timeout=15)
    assert b_app.wait_for("from-alice", timeout=15)


def test_exec_template_gets_the_positional_call(lab: Any, site_spawn: Any) -> None:
    """The original tool's call: COMMAND innerip innerport outerip outerport peerip peerport SECRETFILE."""
    lab.write_profile("b", "alice-exec", template="exec", payload={"vars": {"command": "echo"}})
    lab.write_profile("a", "bob-exec", template="exec", payload={"vars": {"command": "echo"}})
    bob = up(site_spawn, "b", "alice-exec")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-exec")
    assert alice.wait(timeout=30) == 0
    nat = wait_event(alice, "nat", "ok")["data"]
    line = next(x for x in alice.lines() if x.startswith("exec[bob]"))
    fields = line.split()[1:]
    assert fields[:4] == [lab.host_address("a"), str(nat["inner"][1]), lab.public_address("a"), str(nat["outer"][1])]
    assert fields[4] == lab.public_address("b")
    assert fields[6].endswith("/secret"), "the secret goes in a 0600 file, never on argv"


def test_lossy_network_still_connects(lab: Any, lab_settings: Any, site_spawn: Any) -> None:
    lab_settings.set_netem(loss_pct=20)
    lab.write_profile("b", "alice-true", template="exec", payload={"vars": {"command": "true"}},
                      rendezvous={"timeout": "60s"})
    lab.write_profile("a", "bob-true", template="exec", payload={"vars": {"command": "true"}},
                      rendezvous={"timeout": "60s"})
    bob = up(site_spawn, "b", "alice-true")
    wait_event(bob, "offer-received", "start", timeout=40)
    alice = up(site_spawn, "a", "bob-true")
    assert alice.wait(timeout=90) == 0, alice.output()[-3000:]
    wait_event(bob, "launch", "ok", timeout=10)


@pytest.mark.parametrize("hops, connects", [(None, True), (64, False)])
def test_bare_nats_need_ttl_limited_opening(lab: Any, lab_settings: Any, site_spawn: Any, hops: int | None,
                                            connects: bool) -> None:
    """Two NATs without an inbound drop: a full-TTL opening packet reaches the initiator's NAT first and makes it
    re-map the initiator's port (conntrack clash), so the punch fails; TTL-limited opening packets work. No relay
    here (the relay fallback after such a failure: tests/pipeline/test_relay_lab.py)."""
    lab_settings.set_nat("a", "eim-bare")
    lab_settings.set_nat("b", "eim-bare")
    punch = {"timeout": "4s"} if hops is None else {"timeout": "4s", "hops": hops}
    lab.write_profile("b", "alice-bare", template="exec", payload={"vars": {"command": "true"}}, punch=punch,
                      relay=None)
    lab.write_profile("a", "bob-bare", template="exec", payload={"vars": {"command": "true"}}, punch=punch,
                      relay=None)
    bob = up(site_spawn, "b", "alice-bare")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-bare")
    code = alice.wait(timeout=30)
    if connects:
        assert code == 0, alice.output()[-3000:]
        wait_event(bob, "launch", "ok")
    else:
        assert code == 5, alice.output()[-3000:]  # PunchError
        assert "the relay is no way out" in alice.output(), alice.output()[-3000:]
        assert not launched(alice) and not launched(bob)


def test_wrong_certificate_never_launches(lab: Any, site_spawn: Any) -> None:
    """Someone with carol's S/MIME key claiming to be alice: bob drops the invite; no payload anywhere."""
    lab.write_profile("a", "bob-forged", rendezvous={
        "timeout": "4s", "smime": {"certificate": str(lab.certificate("carol")), "key": str(lab.key("carol"))}})
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    mallory = up(site_spawn, "a", "bob-forged")
    assert mallory.wait(timeout=20) == 4  # RendezvousError: no answer
    time.sleep(0.5)
    assert not launched(mallory) and not launched(bob)
    assert not [e for e in events(bob) if e["phase"] == "offer-received" and e["status"] == "ok"]


def test_acceptor_serves_two_initiators_at_once(lab: Any, lab_settings: Any, site_spawn: Any,
                                                 site_run: Any) -> None:
    lab_settings.set_nat("c", "eim")
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    alice, carol = up(site_spawn, "a", "bob"), up(site_spawn, "c", "bob")
    for side in (alice, carol):
        wait_event(side, "payload", "info", timeout=30)
    wait_event(bob, "payload", "info", timeout=10, count=2)
    assert ping(site_run, "a", "198.19.0.2")
    assert ping(site_run, "c", "198.19.0.2")


def test_payload_killed_restarts_through_a_new_punch(lab: Any, site_spawn: Any) -> None:
    lab.write_profile("a", "bob-restart", payload={"restart": "on-failure"})
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    alice = up(site_spawn, "a", "bob-restart")
    first = wait_event(alice, "launch", "ok", timeout=30)
    wait_event(alice, "payload", "info", timeout=30)
    os.kill(first["data"]["pid"], signal.SIGKILL)
    restart = wait_event(alice, "launch", "info", timeout=10)
    assert "restart 1/" in restart["message"]
    wait_event(alice, "punch", "ok", count=2, timeout=30)
    second = wait_event(alice, "launch", "ok", count=2, timeout=30)
    assert second["data"]["pid"] != first["data"]["pid"]
    wait_event(alice, "payload", "info", count=2, timeout=30)


def test_ctrl_c_while_waiting_leaves_nothing(lab: Any, site_spawn: Any, site_run: Any) -> None:
    """Interrupted while waiting for an answer that never comes: exits at once, no process, no run directory,
    and no plexus mail left in either mailbox: the invite is withdrawn, and bob, started later, answers
    neither."""
    from support.mailbox import clear, inventory  # the tests' IMAP view of a lab mailbox

    clear(lab, "alice"), clear(lab, "bob")  # earlier tests leave other mail there
    before = set(os.listdir("/run/plexus")) if os.path.isdir("/run/plexus") else set()
    alice = up(site_spawn, "a", "bob")
    wait_event(alice, "offer-sent", "start")
    time.sleep(0.3)
    os.kill(alice.pid, signal.SIGINT)
    assert alice.wait(timeout=10) == 130
    after = set(os.listdir("/run/plexus")) if os.path.isdir("/run/plexus") else set()
    assert after <= before, f"run directories left behind: {after - before}"
    assert not launched(alice)
    assert inventory(lab, "bob"), "the invite and its withdrawal should wait in bob's mailbox"
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    deadline = time.monotonic() + 10
    while inventory(lab, "bob") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert inventory(lab, "bob") == {}, "bob left plexus mail in his mailbox"
    assert inventory(lab, "alice") == {}, "an answer went to alice, who had withdrawn"
    assert not [e for e in events(bob) if e["phase"] == "offer-sent" and e["status"] == "ok"]
    assert "withdrew its invite" in wait_event(bob, "session", "fail")["message"], bob.output()[-3000:]
    assert not launched(bob)
