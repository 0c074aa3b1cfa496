"""The email rendezvous on the lab's real mail server (dovecot + OpenSMTPD): both roles run as
``python3 -m plexus.rendezvous.probe`` inside the site namespaces; the test reads and writes mailboxes with
imaplib from a thread that joined a site's namespace."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.mailbox import append, clear, inventory
from support.rendezvous import User, make_profile

from plexus.lab import profiles as lab_profiles
from plexus.rendezvous.auth import authenticator_for
from plexus.rendezvous.email.mail import compose
from plexus.rendezvous.offer import Offer

PROBE = ["python3", "-m", "plexus.rendezvous.probe"]
PSK = {"PLEXUS_LAB_PSK": "lab pre-shared key, long enough"}


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def only(found: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [item for item in found if item["event"] == event]


def exchange(site_spawn: Any, site_run: Any, acceptor: tuple[str, Path], initiator: tuple[str, Path], peer: str,
             *, env: dict[str, str] | None = None, acceptor_args: tuple[str, ...] = ()
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One invite/accept round trip; (acceptor events, initiator events)."""
    server = site_spawn(acceptor[0], [*PROBE, str(acceptor[1]), "--accept", "--endpoint", "198.18.12.2:40002",
                                      *acceptor_args], env=env)
    server.wait_for('"ready"', timeout=15)
    done = site_run(initiator[0], [*PROBE, str(initiator[1]), "--invite", peer, "--endpoint", "198.18.11.2:40001",
                                   "--export", "fingerprint=AA:BB"], env=env, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.wait(timeout=15) == 0, server.output()
    return events(server.output()), events(done.stdout)


def assert_agree(acceptor: list[dict[str, Any]], initiator: list[dict[str, Any]], acceptor_id: str,
                 initiator_id: str) -> None:
    (theirs,), (ours,) = only(acceptor, "agreement"), only(initiator, "agreement")
    assert ours["peer"] == acceptor_id and theirs["peer"] == initiator_id
    assert ours["session_id"] == theirs["session_id"] and ours["fingerprint"] == theirs["fingerprint"]
    assert ours["peer_endpoint"] == ["198.18.12.2", 40002] and theirs["peer_endpoint"] == ["198.18.11.2", 40001]
    assert theirs["exports"] == {"fingerprint": "AA:BB"}


def variant(lab: Any, tmp: Path, site: str, name: str, *, role: str, peers: list[str], auth: str = "smime",
            imap: dict[str, Any] | None = None, smtp: dict[str, Any] | None = None) -> Path:
    email = {key: value for key, value in (("imap", imap), ("smtp", smtp)) if value}
    extra = {"rendezvous": {"email": email}} if email else {}
    return lab.write_profile(site, name, role=role, peers=peers, authentication=auth, directory=tmp, **extra)


@pytest.mark.parametrize("auth", ["smime", "psk"])
def test_exchange_both_ways(lab: Any, site_spawn: Any, site_run: Any, tmp_path: Path, auth: str) -> None:
    a_init = variant(lab, tmp_path, "a", "a-init", role="initiate", peers=["bob"], auth=auth)
    b_acc = variant(lab, tmp_path, "b", "b-acc", role="accept", peers=["alice", "carol"], auth=auth)
    acceptor, initiator = exchange(site_spawn, site_run, ("b", b_acc), ("a", a_init), "bob", env=PSK)
    assert_agree(acceptor, initiator, "bob", "alice")
    assert only(acceptor, "ready")[0]["idle"] is True
    # and the other way round: bob invites, alice accepts
    a_acc = variant(lab, tmp_path, "a", "a-acc", role="accept", peers=["bob"], auth=auth)
    b_init = variant(lab, tmp_path, "b", "b-init", role="initiate", peers=["alice"], auth=auth)
    acceptor, initiator = exchange(site_spawn, site_run, ("a", a_acc), ("b", b_init), "alice", env=PSK)
    assert_agree(acceptor, initiator, "alice", "bob")


def test_polling_when_the_server_has_no_idle(lab: Any, site_spawn: Any, site_run: Any, tmp_path: Path) -> None:
    """The server on 198.18.0.26 lacks IDLE: both sides poll; SMTP goes through STARTTLS on 587 here."""
    imap = {"host": lab.mail_host_no_idle, "idle": True, "poll": 0.5}
    smtp = {"port": 587, "tls": "starttls"}
    a_init = variant(lab, tmp_path, "a", "a-poll", role="initiate", peers=["bob"], imap=imap, smtp=smtp)
    b_acc = variant(lab, tmp_path, "b", "b-poll", role="accept", peers=["alice"], imap=imap, smtp=smtp)
    acceptor, initiator = exchange(site_spawn, site_run, ("b", b_acc), ("a", a_init), "bob")
    assert only(acceptor, "ready")[0]["idle"] is False and only(initiator, "ready")[0]["idle"] is False
    assert_agree(acceptor, initiator, "bob", "alice")


def test_refusal_reaches_the_initiator(lab: Any, site_spawn: Any, site_run: Any, tmp_path: Path) -> None:
    a_init = variant(lab, tmp_path, "a", "a-ref", role="initiate", peers=["bob"])
    b_acc = variant(lab, tmp_path, "b", "b-ref", role="accept", peers=["alice"])
    server = site_spawn("b", [*PROBE, str(b_acc), "--accept", "--refuse", "symmetric NAT here"])
    server.wait_for('"ready"', timeout=15)
    done = site_run("a", [*PROBE, str(a_init), "--invite", "bob"], timeout=60)
    assert done.returncode == 1
    (refused,) = only(events(done.stdout), "refused")
    assert "'bob' refused: symmetric NAT here" in refused["message"]


# -- mailbox access from the test (imaplib in a thread inside the user's site namespace) ------------------------









def ordinary(subject: str) -> bytes:
    return (f"From: carol@plexus.test\r\nTo: bob@plexus.test\r\nSubject: {subject}\r\n"
            "Message-ID: <x@plexus.test>\r\n\r\nhello bob\r\n").encode()


def test_bad_mails_are_dropped_and_other_mail_is_untouched(lab: Any, site_spawn: Any, tmp_path: Path) -> None:
    clear(lab, "bob")
    pki = Path(lab.ca).parent
    alice = authenticator_for(make_profile(  # type: ignore[arg-type]
        "alice", [("bob", pki / "bob.crt")], method="smime", user=User("alice", pki / "alice.crt", pki / "alice.key")))
    carol = authenticator_for(make_profile(  # type: ignore[arg-type]
        "carol", [("bob", pki / "bob.crt")], method="smime", user=User("carol", pki / "carol.crt", pki / "carol.key")))
    bob_peer = make_profile("x", [("bob", pki / "bob.crt")]).peers[0]  # type: ignore[attr-defined]

    def offer(sender: str = "alice", to: str = "bob", age: float = 0.0) -> Offer:
        return Offer("invite", sender, to, Offer.new_nonce(), time.time() - age, ("198.18.11.2", 40001),
                     "endpoint-independent", bytes(range(1, 33)))

    def mail(document: bytes, subject: str, *, to_id: str = "bob", media: str | None = None) -> bytes:
        message = compose("alice@plexus.test", "bob@plexus.test", to_id, document,
                          media or alice.media_type)
        message.replace_header("Subject", subject)
        return message.as_bytes()

    genuine = alice.seal(offer().encode(), bob_peer)
    corrupted = bytearray(alice.seal(offer().encode(), bob_peer))
    corrupted[-40] ^= 0xFF
    bad = {  # subject -> (mail, expected log text)
        "forged": (mail(carol.seal(offer().encode(), bob_peer), "forged"), "is not signed by its certificate"),
        "corrupted": (mail(bytes(corrupted), "corrupted"), "dropped mail uid"),
        "stale": (mail(alice.seal(offer(age=3600).encode(), bob_peer), "stale"), "stale"),
        "misaddressed": (mail(alice.seal(offer(to="carol").encode(), bob_peer), "misaddressed"),
                         "addressed to 'carol'"),
        "garbage": (mail(b"\x00\x01 garbage", "garbage", media="application/json"), "cannot decrypt"),
        "no part": (ordinary("no part").replace(b"Subject", b"X-Plexus-Offer: 1\r\nX-Plexus-To: bob\r\nSubject"),
                    "no offer part"),
        "oversize": (mail(b"x" * 200_000, "oversize", media="application/json"), "larger than"),
        "first": (mail(genuine, "first"), ""),
        "replayed": (mail(genuine, "replayed"), "replayed"),
    }
    keep = {"ordinary": "", "ordinary flagged": "\\Flagged \\Seen", "ordinary deleted by the user": "\\Deleted"}
    append(lab, "bob", [(ordinary(subject), flags) for subject, flags in keep.items()])
    append(lab, "bob", [(mail(genuine, "for dave", to_id="dave"), "")])
    append(lab, "bob", [(message, "") for message, _ in bad.values()])

    b_acc = variant(lab, tmp_path, "b", "b-bad", role="accept", peers=["alice", "carol"])
    server = site_spawn("b", [*PROBE, str(b_acc), "--accept", "--count", "1"])
    assert server.wait(timeout=30) == 0, server.output()
    assert len(only(events(server.output()), "agreement")) == 1  # "first", and only it
    drops = [line for line in server.lines() if "dropped" in line]
    assert len(drops) == len(bad) - 1, drops
    for subject, (_, expected) in bad.items():
        if expected:
            assert any(expected in line for line in drops), (subject, expected, drops)

    deadline = time.monotonic() + 5
    while (left := inventory(lab, "bob")) != {**keep, "for dave": ""} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == {**keep, "for dave": ""}  # our offers gone, other mail present with its flags as they were


def test_mail_server_restart_while_waiting(lab: Any, site_spawn: Any, site_run: Any, tmp_path: Path) -> None:
    a_init = variant(lab, tmp_path, "a", "a-rs", role="initiate", peers=["bob"])
    b_acc = variant(lab, tmp_path, "b", "b-rs", role="accept", peers=["alice"])
    server = site_spawn("b", [*PROBE, str(b_acc), "--accept", "--endpoint", "198.18.12.2:40002"])
    server.wait_for('"ready"', timeout=15)
    lab.restart_mail(down_for=1.0)
    server.wait_for("connection lost", timeout=10)
    done = site_run("a", [*PROBE, str(a_init), "--invite", "bob", "--endpoint", "198.18.11.2:40001"], timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.wait(timeout=20) == 0, server.output()
    assert "connection restored" in server.output()
    (theirs,), (ours,) = only(events(server.output()), "agreement"), only(events(done.stdout), "agreement")
    assert ours["session_id"] == theirs["session_id"]


@contextlib.contextmanager
def mail_log_on_failure(lab: Any) -> Iterator[None]:
    """Add the tail of the lab's dovecot log to a failure (restarts are where the mail server misbehaves)."""
    try:
        yield
    except pytest.fail.Exception as failure:
        log = lab.state.dir / "log" / "dovecot.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no dovecot log)"
        pytest.fail(f"{failure}\n--- dovecot.log ---\n{tail}", pytrace=False)


def test_initiator_waits_through_a_restart(lab: Any, site_spawn: Any, tmp_path: Path) -> None:
    a_init = variant(lab, tmp_path, "a", "a-rs2", role="initiate", peers=["bob"])
    b_acc = variant(lab, tmp_path, "b", "b-rs2", role="accept", peers=["alice"])
    initiator = site_spawn("a", [*PROBE, str(a_init), "--invite", "bob"])
    initiator.wait_for('"sent"', timeout=15)  # the invite waits in bob's mailbox; alice waits for the accept
    # the restart must not catch the invite in the relay's queue (the lab's queue does not survive a restart)
    deadline = time.monotonic() + 10
    while "plexus offer" not in inventory(lab, "bob") and time.monotonic() < deadline:
        time.sleep(0.1)
    lab.restart_mail(down_for=1.0)
    with mail_log_on_failure(lab):
        initiator.wait_for("connection lost", timeout=10)
        server = site_spawn("b", [*PROBE, str(b_acc), "--accept"])
        assert server.wait(timeout=30) == 0, server.output()
        assert initiator.wait(timeout=30) == 0, initiator.output()
    assert len(only(events(initiator.output()), "agreement")) == 1


def test_acceptor_answers_five_peers_at_once(lab: Any, site_spawn: Any, tmp_path: Path) -> None:
    """Five initiator ids share alice's (laptop1-3, site a) and carol's (laptop4-5, site c) mailboxes; bob
    answers all of them from one process; each initiator takes only the accept addressed to it."""
    laptops = {f"laptop{i}": ("a" if i <= 3 else "c") for i in range(1, 6)}
    mailbox = {"a": "alice", "c": "carol"}
    document = lab_profiles.build_profile(lab.topology, lab.state, "b", role="accept", peers=("alice",),
                                          authentication="psk")
    document["peers"] = [{"id": laptop, "address": f"{mailbox[site]}@plexus.test",
                          "vars": {"remote_tunnel": f"198.19.0.{10 + index}"}}
                         for index, (laptop, site) in enumerate(laptops.items())]
    bob = lab_profiles.dump(document, tmp_path / "bob-many.yaml")
    initiators = []
    for laptop, site in laptops.items():
        document = lab_profiles.build_profile(lab.topology, lab.state, site, role="initiate", peers=("bob",),
                                              authentication="psk")
        document["host"] = {"id": laptop, "address": f"{mailbox[site]}@plexus.test"}
        initiators.append((laptop, site, lab_profiles.dump(document, tmp_path / f"{laptop}.yaml")))
    server = site_spawn("b", [*PROBE, str(bob), "--accept", "--count", "5"], env=PSK)
    server.wait_for('"ready"', timeout=15)
    clients = [site_spawn(site, [*PROBE, str(path), "--invite", "bob"], env=PSK) for _, site, path in initiators]
    for client in clients:
        assert client.wait(timeout=60) == 0, client.output()
    assert server.wait(timeout=15) == 0, server.output()
    answered = {item["peer"]: item["session_id"] for item in only(events(server.output()), "agreement")}
    assert sorted(answered) == sorted(laptops)
    for (laptop, _, _), client in zip(initiators, clients, strict=True):
        (agreement,) = only(events(client.output()), "agreement")
        assert agreement["session_id"] == answered[laptop]
