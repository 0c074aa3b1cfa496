"""A configured peer turned hostile, against a running acceptor in the lab: carol (a real peer of bob's, with her
own certificate) sends authenticated invites that aim bob's punch at bob's own loopback port. Nothing is sent
there, nothing launches, and the drop says why."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from support.mailbox import append, clear
from support.rendezvous import User, make_profile
from support.up import events, launched, up, wait_event

from plexus.rendezvous.auth import authenticator_for
from plexus.rendezvous.email.mail import compose
from plexus.rendezvous.offer import Offer


def test_an_invite_aimed_at_the_acceptors_own_loopback_sends_nothing_there(lab: Any, site_spawn: Any) -> None:
    clear(lab, "bob")
    target = lab.socket("b")  # bob's host: what an attacker would like him to flood
    target.bind(("127.0.0.1", 0))
    target.setblocking(False)
    port = target.getsockname()[1]
    pki = Path(lab.ca).parent
    carol = authenticator_for(make_profile(  # type: ignore[arg-type]
        "carol", [("bob", pki / "bob.crt")], method="smime", user=User("carol", pki / "carol.crt", pki / "carol.key")))
    bob_peer = make_profile("x", [("bob", pki / "bob.crt")]).peers[0]  # type: ignore[attr-defined]
    bob = up(site_spawn, "b", "alice")
    wait_event(bob, "offer-received", "start")
    for count, address in enumerate(("127.0.0.1", "224.0.0.1"), start=1):  # one at a time: each replaces the last
        offer = Offer("invite", "carol", "bob", Offer.new_nonce(), time.time(), (address, port),
                      "endpoint-independent", bytes(range(1, 33)))
        append(lab, "bob", [(compose("carol@plexus.test", "bob@plexus.test", "bob",
                                     carol.seal(offer.encode(), bob_peer), carol.media_type).as_bytes(), "")])
        deadline = time.monotonic() + 20
        while sum("dropped the invite from carol" in line for line in bob.lines()) < count:
            assert time.monotonic() < deadline, bob.output()[-3000:]
            time.sleep(0.05)
    failures = [e["message"] for e in events(bob) if e["phase"] == "session" and e["status"] == "fail"]
    assert any(f"endpoint 127.0.0.1:{port} is a loopback address" in message for message in failures), failures
    assert any("is a multicast address" in message for message in failures), failures
    time.sleep(0.5)
    received = 0
    while True:
        try:
            target.recv(2048)
            received += 1
        except BlockingIOError:
            break
    target.close()
    assert received == 0, f"{received} datagrams reached bob's own loopback port"
    assert not launched(bob) and bob.returncode is None
