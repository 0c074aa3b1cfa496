"""The network lab is real: NATs map and filter like NATs, STUN answers from two addresses, mail flows from
SMTP to IMAP IDLE, credentials and TLS are checked, and ``lab down`` leaves nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aioice import stun
from cryptography import x509
from support import REPO

from plexus.errors import LabError
from plexus.lab import Lab, network, system
from plexus.lab.topology import Topology, chain_subnet_prefix
from plexus.profile import load as load_profile

PROBES = [sys.executable, "-m", "plexus.lab.probes"]


def stun_mapped(sock: socket.socket, server: tuple[str, int]) -> tuple[str, int]:
    """Our public endpoint as the STUN server at ``server`` sees it (XOR-MAPPED-ADDRESS), 3 tries."""
    sock.settimeout(0.5)
    for _ in range(3):
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        sock.sendto(bytes(request), server)
        try:
            data, source = sock.recvfrom(2048)
        except TimeoutError:
            continue
        response = stun.parse_message(data)
        assert response.transaction_id == request.transaction_id
        assert source == server
        host, port = response.attributes["XOR-MAPPED-ADDRESS"]
        return host, port
    pytest.fail(f"no STUN answer from {server}")


def bound_socket(lab: Lab, site: str) -> socket.socket:
    sock = lab.socket(site)
    sock.bind(("0.0.0.0", 0))
    return sock


@pytest.mark.lab
def test_stun_reports_the_nat_outside_address(lab: Lab) -> None:
    with bound_socket(lab, "a") as sock:
        host, port = stun_mapped(sock, lab.stun_primary)
        assert host == lab.nat_outside_address("a") == "198.18.11.2"
        assert host != lab.host_address("a")
        assert port == sock.getsockname()[1]  # MASQUERADE keeps a free source port


@pytest.mark.lab
def test_eim_maps_primary_and_alternate_alike(lab: Lab) -> None:
    assert lab.nat("b") == "eim"
    with bound_socket(lab, "b") as sock:
        primary = stun_mapped(sock, lab.stun_primary)
        alternate = stun_mapped(sock, lab.stun_alternate)
    assert primary == alternate
    assert primary[0] == lab.nat_outside_address("b")


@pytest.mark.lab
def test_symmetric_maps_each_destination_anew(lab: Lab) -> None:
    assert lab.nat("c") == "symmetric"
    with bound_socket(lab, "c") as sock:
        primary = stun_mapped(sock, lab.stun_primary)
        alternate = stun_mapped(sock, lab.stun_alternate)
    assert primary[0] == alternate[0] == lab.nat_outside_address("c")
    assert primary[1] != alternate[1]


@pytest.mark.lab
def test_set_nat_changes_the_mapping_at_once(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_nat("a", "symmetric")
    with bound_socket(lab, "a") as sock:
        assert stun_mapped(sock, lab.stun_primary)[1] != stun_mapped(sock, lab.stun_alternate)[1]
    lab_settings.set_nat("a", "none")
    with bound_socket(lab, "a") as sock:
        assert stun_mapped(sock, lab.stun_primary)[0] == lab.host_address("a") == lab.public_address("a")


def _input_drops(lab: Lab, site: str) -> int:
    done = system.run(["ip", "netns", "exec", lab.nat_ns(site), "iptables", "-L", "INPUT", "-v", "-x", "-n"])
    return sum(int(line.split()[0]) for line in done.stdout.splitlines() if " DROP " in f" {line} ")


@pytest.mark.lab
def test_unsolicited_packet_to_a_nat_is_dropped(lab: Lab) -> None:
    with bound_socket(lab, "a") as inside, bound_socket(lab, "srv") as outside:
        inside.settimeout(0.3)
        port = inside.getsockname()[1]
        before = _input_drops(lab, "a")
        outside.sendto(b"unsolicited", (lab.nat_outside_address("a"), port))
        with pytest.raises(TimeoutError):
            inside.recvfrom(100)
        assert _input_drops(lab, "a") == before + 1
        # the same packet is let in once alice has sent to that peer: the path itself works
        inside.sendto(b"hello", (lab.stun_primary[0], outside.getsockname()[1]))
        outside.settimeout(1)
        data, seen_from = outside.recvfrom(100)
        assert (data, seen_from) == (b"hello", (lab.nat_outside_address("a"), port))
        outside.sendto(b"reply", seen_from)
        assert inside.recvfrom(100)[0] == b"reply"


@pytest.mark.lab
def test_opening_packets_with_the_profile_hops_die_between_the_nats(lab: Lab, site_run: Any) -> None:
    hops = yaml.safe_load((lab.profile_dir("a") / "bob.yaml").read_text())["punch"]["hops"]
    done = site_run("a", ["ping", "-c1", "-W1", "-t", str(hops), lab.nat_outside_address("b")])
    assert "Time to live exceeded" in done.stdout
    assert "From 198.18.11.1 " in done.stdout  # the first router after alice's NAT, far from bob's NAT
    reached = site_run("a", ["ping", "-c1", "-W1", "-t", str(lab.topology.path_length + 1), lab.stun_primary[0]])
    assert reached.returncode == 0, reached.stdout


@pytest.mark.lab
def test_netem_delays_the_outside_links(lab: Lab, lab_settings: Any, site_run: Any) -> None:
    lab_settings.set_netem(delay_ms=40)
    done = site_run("a", ["ping", "-c1", "-W2", lab.stun_primary[0]])
    assert done.returncode == 0, done.stdout
    rtt = float(done.stdout.split("time=")[1].split()[0])
    assert rtt >= 80  # 40 ms out through the NAT's wan, 40 ms back through its lan


@pytest.mark.lab
def test_mail_from_alice_is_seen_by_bobs_idle(lab: Lab, site_run: Any, site_spawn: Any) -> None:
    watcher = site_spawn("b", [*PROBES, "idle", "--count", "1", "--timeout", "20"])
    watcher.wait_for('"ready"', timeout=10)
    sent = site_run("a", [*PROBES, "send", "--to", "bob", "--subject", "lab test"])
    assert sent.returncode == 0, sent.stdout + sent.stderr
    seen = json.loads(watcher.wait_for('"exists"', timeout=10))
    assert seen["t"] >= json.loads(sent.stdout)["started"]
    assert watcher.wait(timeout=10) == 0


@pytest.mark.lab
def test_starttls_submission_delivers_too(lab: Lab, site_run: Any) -> None:
    sent = site_run("c", [*PROBES, "send", "--to", "alice", "--port", "587"])
    assert sent.returncode == 0, sent.stdout + sent.stderr


@pytest.mark.lab
def test_wrong_password_is_refused(lab: Lab, site_run: Any) -> None:
    refused = site_run("a", [*PROBES, "--password", "not-the-password", "login"])
    assert json.loads(refused.stdout) == {"ok": False}
    accepted = site_run("a", [*PROBES, "login"])
    assert json.loads(accepted.stdout) == {"ok": True}
    smtp = site_run("a", [*PROBES, "--password", "not-the-password", "send", "--to", "bob"])
    assert smtp.returncode == 1 and "SMTPAuthenticationError" in smtp.stdout


@pytest.mark.lab
def test_tls_is_verified_against_the_lab_ca(lab: Lab, site_run: Any, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes((lab.state.pki / "alice.crt").read_bytes())  # a certificate that signed nothing
    done = site_run("a", [*PROBES, "login"], env={"PLEXUS_LAB_CA": str(other_ca)})
    assert done.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in done.stdout


@pytest.mark.lab
def test_second_mail_address_does_not_offer_idle(lab: Lab, site_run: Any) -> None:
    plain = json.loads(site_run("a", [*PROBES, "capability"]).stdout)["capability"]
    polling = json.loads(site_run("a", [*PROBES, "--host", lab.mail_host_no_idle, "capability"]).stdout)
    assert "IDLE" in plain
    assert "IDLE" not in polling["capability"] and "IMAP4rev1" in polling["capability"]


@pytest.mark.lab
def test_restart_mail_keeps_the_mailboxes(lab: Lab, site_run: Any) -> None:
    lab.restart_mail()
    assert json.loads(site_run("b", [*PROBES, "login"]).stdout) == {"ok": True}
    assert site_run("a", [*PROBES, "send", "--to", "carol"]).returncode == 0


@pytest.mark.lab
def test_site_profiles_and_certificates(lab: Lab) -> None:
    ca = x509.load_pem_x509_certificate(lab.ca.read_bytes())
    expected = {"a": ("bob", "alice", "initiate", ["bob"]), "b": ("alice", "bob", "accept", ["alice", "carol"]),
                "c": ("bob", "carol", "initiate", ["bob"])}
    for site, (name, user, role, peers) in expected.items():
        text = (lab.profile_dir(site) / f"{name}.yaml").read_text()
        assert text.startswith("# yaml-language-server: $schema=/")
        profile = yaml.safe_load(text)
        assert (profile["host"]["id"], profile["role"]) == (user, role)
        assert [p["id"] for p in profile["peers"]] == peers
        assert profile["rendezvous"]["email"]["login"] == user
        assert profile["stun"]["servers"] == ["198.18.0.10:3478"]
        for path in [profile["rendezvous"]["smime"]["key"], *(p["certificate"] for p in profile["peers"])]:
            assert Path(path).is_file()
        cert = x509.load_pem_x509_certificate(lab.certificate(user).read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == [f"{user}@plexus.test"]
        assert oct(lab.key(user).stat().st_mode & 0o777) == "0o600"
        loaded = load_profile(lab.profile_dir(site) / f"{name}.yaml")  # the real loader accepts it as is
        assert (loaded.host.id, loaded.role, loaded.punch.hops) == (user, role, 2)
        assert loaded.rendezvous.email is not None and loaded.rendezvous.email.ca == lab.ca


@pytest.mark.lab
def test_write_profile_variants(lab: Lab, tmp_path: Path) -> None:
    variant = lab.write_profile("a", "bob-psk", authentication="psk", punch={"hops": 3}, directory=tmp_path)
    document = yaml.safe_load(variant.read_text())
    assert document["rendezvous"]["authentication"] == "psk" and document["punch"] == {"hops": 3, "timeout": "20s"}
    profile = load_profile(variant)
    assert profile.rendezvous.authentication.psk is not None
    assert profile.rendezvous.authentication.psk.source == "PLEXUS_LAB_PSK" and lab.env("a")["PLEXUS_LAB_PSK"]
    polling = lab.write_profile("b", "alice-poll", directory=tmp_path,
                                rendezvous={"email": {"imap": {"host": lab.mail_host_no_idle, "idle": False}}})
    imap = load_profile(polling).rendezvous.email.imap  # type: ignore[union-attr]
    assert (imap.host, imap.idle, imap.port) == (lab.mail_host_no_idle, False, 993)


@pytest.mark.lab
def test_lab_exec_gives_the_site_environment(lab: Lab) -> None:
    env = {**os.environ, "PLEXUS_LAB_NAME": lab.name}
    done = subprocess.run([sys.executable, "-m", "plexus.cli", "lab", "exec", "b", "--", "sh", "-c",
                           'echo "$PLEXUS_PROFILE_PATH $PLEXUS_LAB_CA"; ip -4 -br addr show eth0'],
                          capture_output=True, text=True, timeout=20, env=env)
    assert done.returncode == 0, done.stderr
    assert f"{lab.profile_dir('b')} {lab.ca}" in done.stdout
    assert lab.host_address("b") in done.stdout
    status = subprocess.run([sys.executable, "-m", "plexus.cli", "lab", "status", "--json"], capture_output=True,
                            text=True, timeout=20, env=env)
    assert json.loads(status.stdout)["up"] is True


@pytest.mark.lab
def test_lab_down_leaves_no_namespace_and_no_process(lab: Lab) -> None:
    other = Lab.up(f"{lab.name}-2", force=True)  # a second lab beside the session's: they must not collide
    try:
        sleeper = other.spawn("a", ["sleep", "60"])
        assert json.loads(other.run("a", [*PROBES, "login"]).stdout) == {"ok": True}
        pids = [*other.state.pids().values(), *system.netns_pids(other.namespaces())]
        namespaces = other.namespaces()
    finally:
        other.down()
    assert sleeper.wait(timeout=2) is not None
    assert not [pid for pid in pids if system.alive(pid)]
    assert network.existing_namespaces(namespaces) == []
    assert not other.state.dir.exists()
    assert lab.is_up()  # the session's lab is untouched


@pytest.mark.lab
def test_down_removes_a_half_built_lab(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    from plexus.lab import mail

    name = f"{lab.name}-3"

    def crash(*args: Any, **kwargs: Any) -> None:
        raise LabError("simulated crash while starting mail")

    monkeypatch.setattr(mail, "start", crash)
    with pytest.raises(LabError, match="simulated crash"):
        Lab.up(name, force=True)  # up removes what it built when it fails
    assert network.existing_namespaces(Topology(name).namespaces()) == []
    # a crash that up cannot clean (killed mid-way): the journal still lets down remove everything
    half = Lab(name)
    half.state.create()
    network.build(Topology(name), half.state)
    orphan = subprocess.Popen(["ip", "netns", "exec", Topology(name).ns("b"), "sleep", "60"])
    half.down()
    assert orphan.wait(timeout=2) is not None
    assert network.existing_namespaces(Topology(name).namespaces()) == []
    assert not half.state.dir.exists()


@pytest.mark.lab
def test_lab_up_reports_an_existing_lab(lab: Lab) -> None:
    started = time.monotonic()
    again = Lab.up(lab.name)  # no force: the running lab is kept as it is
    assert time.monotonic() - started < 1 and again.is_up()
    assert again.state.pids() == lab.state.pids()


@pytest.mark.lab
def test_path_length_puts_n_routers_between_the_nats(lab: Lab) -> None:
    def last_hop_before_bobs_nat(probe: Lab) -> str:
        """The router that drops a packet from a to b's NAT with TTL path_length + 1."""
        ttl = probe.topology.path_length + 1  # a's NAT and N routers each take one
        done = probe.run("a", ["ping", "-c1", "-W1", "-t", str(ttl), probe.nat_outside_address("b")])
        return done.stdout.split("From ")[1].split()[0] if "Time to live exceeded" in done.stdout else done.stdout

    # the router right before bob's NAT answers from its address towards alice (its hub side)
    assert last_hop_before_bobs_nat(lab) == chain_subnet_prefix("b", 1) + ".2"
    other = Lab.up(f"{lab.name}-4", path_length=4, nat={"b": "none"}, force=True)
    try:
        assert len(other.topology.routers("a")) + 1 + len(other.topology.routers("b")) == 4
        assert last_hop_before_bobs_nat(other) == chain_subnet_prefix("b", 1) + ".2"
        # NAT kind none: bob's host answers at its own address behind N + 2 forwarding hops (both NATs)
        short = other.run("a", ["ping", "-c1", "-W1", "-t", "6", other.host_address("b")])
        reached = other.run("a", ["ping", "-c1", "-W1", "-t", "7", other.host_address("b")])
        assert short.returncode != 0 and reached.returncode == 0, short.stdout + reached.stdout
        assert other.public_address("b") == other.host_address("b")
    finally:
        other.down()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plexus.cli", *args], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def test_lab_needs_root_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from plexus.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["lab", "up"]) == 7
    assert capsys.readouterr().err == "plexus: the lab needs root (it creates network namespaces) (run it with sudo)\n"


def test_missing_package_is_named_with_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, **kw: None if name == "turnserver" else real_which(name, **kw))
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # runs without root too (pytest -m "not lab")
    with pytest.raises(LabError) as raised:
        system.check_host()
    assert str(raised.value) == ("the lab needs the Debian package(s) coturn "
                                 "(apt-get install -y --no-install-recommends coturn)")


@pytest.mark.lab  # no lab is built, but `lab down` and `lab exec` need root before they look
def test_lab_commands_on_a_lab_that_is_not_up() -> None:
    env = {"PLEXUS_LAB_NAME": "plexus-nolab"}
    done = _cli("lab", "exec", "a", "--", "true", env=env)
    assert (done.returncode, done.stderr.strip()) == (7, "plexus: lab 'plexus-nolab' is not up (plexus lab up)")
    assert _cli("lab", "status", env=env).returncode == 1
    down = _cli("lab", "down", env=env)
    assert down.returncode == 0 and "nothing to remove" in down.stdout


def test_topology_addresses_and_names() -> None:
    topology = Topology("x", path_length=5)
    assert [len(topology.routers(s)) for s in "abc"] == [2, 2, 2]
    assert topology.namespaces()[:2] == ["x-inet", "x-srv"]
    assert all(len(link.if1) <= 15 and len(link.if2) <= 15 for link in topology.links())
    addresses = [a.split("/")[0] for link in topology.links() for a in (link.addr1, link.addr2)]
    assert len(addresses) == len(set(addresses)) and all(a.startswith("198.18.") for a in addresses)
    assert [len(Topology("x", path_length=n).routers("a")) + 1 + len(Topology("x", path_length=n).routers("b"))
            for n in (1, 2, 3, 4, 39)] == [1, 2, 3, 4, 39]
    with pytest.raises(ValueError):
        Topology("x", path_length=0)
    assert "--random-fully" in network.nat_rules("symmetric") and "INPUT -i wan -j DROP" in network.nat_rules("eim")
    assert "INPUT" not in network.nat_rules("eim-bare").split("*filter")[1].replace(":INPUT ACCEPT", "")
    assert "MASQUERADE" not in network.nat_rules("none")


def test_lab_up_on_a_running_lab_applies_loss_and_nat(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_netem()  # remembered, and restored after the test
    lab_settings.set_nat("a", lab.nat("a"))
    env = {**os.environ, "PLEXUS_LAB_NAME": lab.name}
    done = subprocess.run([sys.executable, "-m", "plexus", "lab", "up", "--loss", "20", "--nat-a", "eim-bare"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "changed: NAT a eim-bare; loss 20%, delay 0 ms" in done.stdout
    fresh = Lab(lab.name)
    assert fresh.config["netem"]["loss_pct"] == 20 and fresh.nat("a") == "eim-bare"
    refused = subprocess.run([sys.executable, "-m", "plexus", "lab", "up", "--path-length", "5"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 7 and "--force" in refused.stderr
