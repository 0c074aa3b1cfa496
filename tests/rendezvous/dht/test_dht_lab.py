"""The DHT rendezvous in the lab: a bootstrap node in srv (``plexus.lab.dht``), alice in site a and bob in site b
behind their NATs, the mail server stopped to show it plays no part. (A bootstrap node restarted while the
acceptor waits: tests/rendezvous/dht/test_dht_loopback.py.)"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from plexus.lab import mail
from plexus.lab.dht import dht_profile_overrides, start_bootstrap, stop_bootstrap

PROBE = [sys.executable, "-m", "plexus.rendezvous.dht.probe"]
PLEXUS = [sys.executable, "-m", "plexus"]


@pytest.fixture(scope="module")
def dht_lab(lab: Any) -> Iterator[Any]:
    """The lab with its DHT bootstrap node running, the DHT profiles alice-dht (site b, bob accepting) and
    bob-dht (site a, alice initiating), and the mail server stopped for the duration."""
    start_bootstrap(lab)
    lab.write_profile("b", "alice-dht", **dht_profile_overrides())
    lab.write_profile("a", "bob-dht", **dht_profile_overrides())
    for name in ("forged", "replay"):  # keys of their own: values live 10 min on the DHT
        lab.write_profile("b", f"alice-dht-{name}", **dht_profile_overrides(f"plexus-lab-{name}"))
        for site in ("a", "c"):
            lab.write_profile(site, f"bob-dht-{name}", **dht_profile_overrides(f"plexus-lab-{name}"))
    mail.stop(lab.state)
    try:
        yield lab
    finally:
        stop_bootstrap(lab)
        mail.start(lab.topology, lab.state)


def probe_events(process: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in process.lines() if line.startswith('{"event"')]


def wait_events(process: Any, kind: str, count: int = 1, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [event for event in probe_events(process) if event["event"] == kind]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline or process.returncode is not None:
            pytest.fail(f"no {count} {kind!r} event(s) from {' '.join(process.argv)} in site {process.site} "
                        f"(exit {process.returncode}); output:\n{process.output()[-3000:]}", pytrace=False)
        time.sleep(0.02)


def agreement_in(output: str) -> dict[str, Any]:
    found = [json.loads(line) for line in output.splitlines() if line.startswith('{"event": "agreement"')]
    assert found, f"no agreement in:\n{output[-3000:]}"
    return found[0]


def exchange_once(site_spawn: Any, site_run: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    bob = site_spawn("b", [*PROBE, "alice-dht", "--accept", "--count", "1"])
    assert wait_events(bob, "ready")[0]["bootstrap"], "bob's DHT node did not reach the bootstrap node"
    alice = site_run("a", [*PROBE, "bob-dht", "--invite", "bob", "--endpoint", "198.18.11.2:40000"], timeout=30)
    assert alice.returncode == 0, alice.stdout + alice.stderr
    ours = agreement_in(alice.stdout)
    theirs = wait_events(bob, "agreement")[0]
    return ours, theirs


def test_offers_cross_the_dht_between_two_nats_with_the_mail_server_down(
        dht_lab: Any, site_spawn: Any, site_run: Any) -> None:
    assert not any(label in dht_lab.state.pids() for label in ("dovecot", "smtpd")), "the mail server runs"
    ours, theirs = exchange_once(site_spawn, site_run)
    assert ours["fingerprint"] == theirs["fingerprint"] and ours["session_id"] == theirs["session_id"]
    assert (ours["peer"], theirs["peer"]) == ("bob", "alice")
    assert theirs["peer_endpoint"] == ["198.18.11.2", 40000]


def test_doctor_reaches_the_lab_bootstrap_node(dht_lab: Any, site_run: Any) -> None:
    script = ("import asyncio, json; from plexus.profile import load; from plexus.doctor.dht import check_dht; "
              "print(json.dumps([[c.name, c.status, c.detail] for c in asyncio.run(check_dht(load('bob-dht')))]))")
    done = site_run("a", [sys.executable, "-c", script], timeout=30)
    assert done.returncode == 0, done.stderr
    checks = json.loads(done.stdout.splitlines()[-1])
    assert [status for _, status, _ in checks] == ["ok", "ok", "ok"], checks
    assert checks[-1][0] == "DHT bootstrap 198.18.0.10:4222"


FORGER = """
import asyncio, sys, time
from plexus.profile import load
from plexus.rendezvous.auth import SmimeAuthenticator
from plexus.rendezvous.dht import value_id
from plexus.rendezvous.dht.identity import key_text, load_own, peer_certificate
from plexus.rendezvous.dht.node import DhtNode
from plexus.rendezvous.offer import Offer

async def main():
    carol = load("bob-dht-forged")  # site c: carol, a configured peer of bob's, turned forger
    bob = carol.peers[0]
    key = key_text(peer_certificate(bob), carol.rendezvous.dht.app)
    sealer = SmimeAuthenticator(load_own(carol), carol.peers, [])
    async with DhtNode(bootstrap=carol.rendezvous.dht.bootstrap) as node:
        seen = asyncio.Queue()
        node.listen(key, seen.put_nowait)
        await asyncio.sleep(1.0)  # what is there already is earlier tests' (values live 10 min)
        earlier = set()
        while not seen.empty():
            earlier.add(seen.get_nowait().value_id)
        print("listening", flush=True)
        genuine = await asyncio.wait_for(seen.get(), 30)   # alice's invite to bob, as anyone may read it
        while genuine.value_id in earlier:
            genuine = await asyncio.wait_for(seen.get(), 30)
        forged = Offer(kind="invite", sender="alice", recipient="bob", nonce=Offer.new_nonce(), time=time.time(),
                       endpoint=("198.18.13.2", 9), nat="endpoint-independent", key=bytes(range(32))).encode()
        puts = [await node.put(key, genuine.data, 5, value_id=value_id(time.time())),  # replayed, a new value
                await node.put(key, sealer.seal(forged, bob), 5, value_id=value_id(time.time()))]  # carol as alice
        print("put", puts, flush=True)
asyncio.run(main())
"""


def test_forged_and_replayed_values_are_dropped_in_the_lab(dht_lab: Any, site_spawn: Any, site_run: Any) -> None:
    bob = site_spawn("b", [*PROBE, "alice-dht-forged", "--accept", "--count", "0"])
    wait_events(bob, "ready")
    forger = site_spawn("c", [sys.executable, "-c", FORGER])
    forger.wait_for("listening", timeout=15)
    alice = site_run("a", [*PROBE, "bob-dht-forged", "--invite", "bob"], timeout=30)
    assert alice.returncode == 0, alice.stdout + alice.stderr
    assert "True" in forger.wait_for("put", timeout=20)
    deadline = time.monotonic() + 10
    wanted = ("replayed (nonce seen before)", "claims to be from 'alice' but is not signed by its certificate")
    while not all(text in bob.output() for text in wanted) and time.monotonic() < deadline:
        time.sleep(0.05)
    output = bob.output()
    for text in wanted:
        assert output.count(text) == 1, f"expected one drop line with {text!r}:\n{output[-3000:]}"
    assert len(wait_events(bob, "agreement")) == 1 and len(wait_events(bob, "received")) == 1


def test_plexus_up_brings_the_tunnel_up_over_the_dht(dht_lab: Any, site_spawn: Any, site_run: Any) -> None:
    """`plexus up alice-dht` in b and `plexus up bob-dht` in a: openvpn across the NATs, ping both ways."""
    from support.up import ping, wait_event

    bob = site_spawn("b", [*PLEXUS, "up", "alice-dht", "--json"])
    wait_event(bob, "offer-received", "start")
    alice = site_spawn("a", [*PLEXUS, "up", "bob-dht", "--json"])
    for side in (alice, bob):
        wait_event(side, "payload", "info", timeout=40)
    assert ping(site_run, "a", "198.19.0.2"), "no ping across the tunnel from alice"
    assert ping(site_run, "b", "198.19.0.1"), "no ping across the tunnel from bob"


REPUTTER = """
import asyncio, os, sys, time
from plexus.profile import load
from plexus.rendezvous.dht import value_id
from plexus.rendezvous.dht.identity import key_text, peer_certificate
from plexus.rendezvous.dht.node import DhtNode

async def main():
    profile = load("bob-dht-replay")  # site c: a bystander; bob's key is derivable from his certificate
    key = key_text(peer_certificate(profile.peers[0]), profile.rendezvous.dht.app)
    async with DhtNode(bootstrap=profile.rendezvous.dht.bootstrap) as node:
        seen = asyncio.Queue()
        node.listen(key, seen.put_nowait)
        await asyncio.sleep(1.0)
        earlier = set()
        while not seen.empty():
            earlier.add(seen.get_nowait().value_id)
        print("listening", flush=True)
        captured = await asyncio.wait_for(seen.get(), 30)  # alice's first invite, as anyone may read it
        while captured.value_id in earlier:
            captured = await asyncio.wait_for(seen.get(), 30)
        print("captured", flush=True)
        deadline = time.monotonic() + 90
        while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        print("put", await node.put(key, captured.data, 5, value_id=value_id(time.time())), flush=True)
asyncio.run(main())
"""


def initiate_over_the_dht(site_spawn: Any, profile: str, attempts: int = 2) -> Any:
    """`plexus up PROFILE` in site a until its payload is up: a DHT put now and then never reaches the peer's
    node in the lab (the initiator then gives up after its rendezvous timeout), so a second attempt is allowed."""
    from support.up import events

    for attempt in range(attempts):
        alice = site_spawn("a", [*PLEXUS, "up", profile, "--json"])
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and alice.returncode is None:
            if any(e["phase"] == "payload" and e["status"] == "info" for e in events(alice)):
                return alice
            time.sleep(0.05)
        if attempt == attempts - 1 or alice.returncode is None:
            pytest.fail(f"{profile} in site a: no payload (exit {alice.returncode}):\n{alice.output()[-3000:]}",
                        pytrace=False)
    raise AssertionError("unreachable")


def test_a_re_put_invite_launches_nothing_and_leaves_the_tunnel_up(dht_lab: Any, site_spawn: Any, site_run: Any,
                                                                   tmp_path: Any) -> None:
    """A bystander reads alice's invite off the DHT and, after bob restarted and a newer session is up, puts it
    again under a fresh value id (which passes the carrier's linger check): bob drops it, the tunnel stays."""
    from support.up import drops, invites_taken, launched, ping, wait_event

    trigger = tmp_path / "re-put now"
    bystander = site_spawn("c", [sys.executable, "-c", REPUTTER, str(trigger)])
    bystander.wait_for("listening", timeout=20)
    first = [site_spawn("b", [*PLEXUS, "up", "alice-dht-replay", "--json"])]
    wait_event(first[0], "offer-received", "start", timeout=20)
    first.append(initiate_over_the_dht(site_spawn, "bob-dht-replay"))
    wait_event(first[0], "payload", "info", timeout=40)
    bystander.wait_for("captured", timeout=20)
    for side in first:
        side.stop()
    bob = site_spawn("b", [*PLEXUS, "up", "alice-dht-replay", "--json"])
    wait_event(bob, "offer-received", "start", timeout=20)
    alice = initiate_over_the_dht(site_spawn, "bob-dht-replay")
    wait_event(bob, "payload", "info", timeout=40)
    taken, launches = invites_taken(bob), len(launched(bob))
    trigger.touch()
    assert "True" in bystander.wait_for("put", timeout=20)
    drops(bob, "replayed (nonce seen before)", timeout=20)
    assert invites_taken(bob) == taken and len(launched(bob)) == launches  # the re-put started nothing
    assert bob.returncode is None and alice.returncode is None
    assert ping(site_run, "a", "198.19.0.2"), "the tunnel went down after the re-put"
