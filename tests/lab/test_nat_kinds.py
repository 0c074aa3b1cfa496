"""The lab's NAT kinds ``eif`` (full cone) and ``double`` (a home NAT below a carrier-grade NAT), seen the way
plexus sees them: ``plexus nat`` in the site, STUN from the site, TTL-limited opening packets and the NATs' own
connection tracking tables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
import yaml
from aioice import stun

from plexus.lab import Lab, network, system
from plexus.lab.topology import (
    SITES,
    Topology,
    carrier_gateway,
    home_wan_address,
    nat_outside_address,
    possible_namespaces,
)


def plexus_nat(lab: Lab, site: str) -> dict[str, Any]:
    done = lab.run(site, ["plexus", "nat", "--json"], timeout=30)
    assert done.stdout, f"plexus nat in site {site}: exit {done.returncode}: {done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def stun_mapped(sock: socket.socket, server: tuple[str, int]) -> tuple[str, int]:
    sock.settimeout(0.5)
    for _ in range(3):
        request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        sock.sendto(bytes(request), server)
        try:
            response = stun.parse_message(sock.recvfrom(2048)[0])
        except TimeoutError:
            continue
        assert response.transaction_id == request.transaction_id
        host, port = response.attributes["XOR-MAPPED-ADDRESS"]
        return host, port
    pytest.fail(f"no STUN answer from {server}")


def udp_entries(namespace: str, port: int) -> list[str]:
    """The UDP conntrack entries of ``namespace`` towards destination port ``port`` (conntrack -L)."""
    done = system.run(["ip", "netns", "exec", namespace, "conntrack", "-L", "-p", "udp", "--dport", str(port)],
                      check=False)
    return [line for line in done.stdout.splitlines() if line.startswith("udp")]


def input_drops(namespace: str) -> int:
    done = system.run(["ip", "netns", "exec", namespace, "iptables", "-L", "INPUT", "-v", "-x", "-n"])
    return sum(int(line.split()[0]) for line in done.stdout.splitlines() if " DROP " in f" {line} ")


@pytest.mark.lab
def test_eif_filters_endpoint_independently_and_eim_does_not(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_nat("a", "eif")
    full_cone = plexus_nat(lab, "a")
    assert (full_cone["mapping"], full_cone["filtering"]) == ("endpoint-independent", "endpoint-independent")
    assert full_cone["public"].split(":")[0] == lab.nat_outside_address("a") and full_cone["port_preserved"]
    assert full_cone["punchable"] is True
    assert lab.nat("b") == "eim"
    home = plexus_nat(lab, "b")
    assert home["mapping"] == "endpoint-independent"
    assert home["filtering"] in ("address-and-port-dependent", "address-dependent")


@pytest.mark.lab
def test_eif_lets_anyone_reach_a_mapped_port(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_nat("a", "eif")
    with lab.socket("a") as inside, lab.socket("srv") as stranger:
        inside.bind(("0.0.0.0", 0))
        stranger.bind((lab.stun_alternate[0], 0))
        public = stun_mapped(inside, lab.stun_primary)  # the mapping exists towards the STUN server only
        assert public == (lab.nat_outside_address("a"), inside.getsockname()[1])
        stranger.sendto(b"unsolicited", public)  # another address and port than the STUN server's
        inside.settimeout(1)
        data, source = inside.recvfrom(100)
        assert (data, source) == (b"unsolicited", stranger.getsockname())
        inside.sendto(b"answer", source)  # and the answer leaves through the same public port
        stranger.settimeout(1)
        assert stranger.recvfrom(100) == (b"answer", public)


@pytest.mark.lab
def test_double_nat_is_seen_at_the_carrier_address_with_an_independent_mapping(lab: Lab,
                                                                              lab_settings: Any) -> None:
    lab_settings.set_nat("b", "double")
    cgn, home = lab.nat_namespaces("b")
    assert (cgn, home) == (f"{lab.name}-cgnb", lab.nat_ns("b"))
    assert network.existing_namespaces([cgn]) == [cgn]
    with lab.socket("b") as sock:
        sock.bind(("0.0.0.0", 0))
        primary = stun_mapped(sock, lab.stun_primary)
        alternate = stun_mapped(sock, lab.stun_alternate)
        local_port = sock.getsockname()[1]
    assert primary == alternate == (lab.public_address("b"), local_port)  # both NATs keep the free port
    assert lab.public_address("b") == lab.nat_outside_address("b") == "198.18.12.2"
    report = plexus_nat(lab, "b")
    assert report["mapping"] == "endpoint-independent" and report["public"].startswith("198.18.12.2:")
    assert report["filtering"] == "address-and-port-dependent"
    # the home NAT's own wan is on the carrier link, behind the carrier-grade NAT
    addresses = system.run(["ip", "-n", home, "-4", "-br", "addr", "show", "wan"]).stdout
    assert f"{home_wan_address('b')}/24" in addresses


@pytest.mark.lab
def test_double_nat_opening_packets_open_both_nats_and_die_before_the_peer(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_nat("b", "double")
    hops = lab.topology.punch_hops("b")
    assert hops == 3 and lab.topology.punch_hops("a") == 2
    profile = yaml.safe_load((lab.profile_dir("b") / "alice.yaml").read_text())
    assert profile["punch"]["hops"] == hops  # the site's profile follows its NATs
    cgn, home = lab.nat_namespaces("b")
    peer_nat = lab.nat_ns("a")
    drops_before = input_drops(peer_nat)
    for ttl, port in ((hops - 1, 40001), (hops, 40002)):
        with lab.socket("b") as sock:
            sock.bind(("0.0.0.0", 0))
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
            sock.sendto(b"open", (lab.public_address("a"), port))
            assert udp_entries(home, port), f"TTL {ttl}: no entry in the home NAT"
            assert bool(udp_entries(cgn, port)) == (ttl == hops), f"TTL {ttl}: carrier-grade NAT"
    assert not udp_entries(peer_nat, 40002) and input_drops(peer_nat) == drops_before
    # the router that drops it is the first one beyond the carrier-grade NAT, far from the peer's NAT
    done = lab.run("b", ["ping", "-c1", "-W1", "-t", str(hops), lab.nat_outside_address("a")])
    assert "Time to live exceeded" in done.stdout and "From 198.18.12.1 " in done.stdout, done.stdout


@pytest.mark.lab
def test_switching_to_double_and_back_rewires_the_site(lab: Lab, lab_settings: Any) -> None:
    lab_settings.set_nat("b", lab.nat("b"))  # restored after the test
    env = {**os.environ, "PLEXUS_LAB_NAME": lab.name}
    done = subprocess.run([sys.executable, "-m", "plexus", "lab", "up", "--nat-b", "double"], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 0 and "changed: NAT b double" in done.stdout, done.stderr
    fresh = Lab(lab.name)
    assert fresh.nat("b") == "double" and fresh.is_up()
    assert plexus_nat(fresh, "b")["public"].startswith(f"{fresh.public_address('b')}:")
    fresh.set_nat("b", "eim")
    assert network.existing_namespaces([fresh.topology.cgn_ns("b")]) == []
    assert fresh.is_built() and lab.run("b", ["ping", "-c1", "-W1", lab.stun_primary[0]]).returncode == 0
    assert yaml.safe_load((lab.profile_dir("b") / "alice.yaml").read_text())["punch"]["hops"] == 2
    with lab.socket("b") as sock:
        sock.bind(("0.0.0.0", 0))
        assert stun_mapped(sock, lab.stun_primary)[0] == "198.18.12.2"


@pytest.mark.lab
def test_a_lab_built_with_eif_and_double(lab: Lab) -> None:
    other = Lab.up(f"{lab.name}-5", nat={"a": "eif", "b": "double"}, path_length=1, force=True)
    try:
        assert network.existing_namespaces([other.topology.cgn_ns("b")]) == [other.topology.cgn_ns("b")]
        # with one router between the NATs, TTL 3 from the double NAT still dies at the hub
        done = other.run("b", ["ping", "-c1", "-W1", "-t", "3", other.nat_outside_address("a")])
        assert "Time to live exceeded" in done.stdout and "From 198.18.12.1 " in done.stdout, done.stdout
        assert plexus_nat(other, "a")["filtering"] == "endpoint-independent"
        # rewiring right below the hub (no chain routers at path length 1) in both directions
        other.set_nat("a", "double")
        other.set_nat("b", "eim")
        assert [plexus_nat(other, site)["public"].split(":")[0] for site in "ab"] == ["198.18.11.2", "198.18.12.2"]
        assert other.is_built() and other.namespaces() == network.existing_namespaces(other.namespaces())
    finally:
        other.down()
    assert network.existing_namespaces(possible_namespaces(other.name)) == []


def site_links(topology: Topology, site: str) -> list[Any]:
    names = {topology.ns(site), *topology.nat_namespaces(site), *topology.routers(site)}
    return [link for link in topology.links() if {link.ns1, link.ns2} & names]


def test_double_topology_addresses() -> None:
    topology = Topology("x", path_length=4, nat={"a": "eif", "b": "double", "c": "double"})
    addresses = [a.split("/")[0] for link in topology.links() for a in (link.addr1, link.addr2)]
    assert len(addresses) == len(set(addresses)) and all(a.startswith("198.18.") for a in addresses)
    assert [topology.punch_hops(site) for site in SITES] == [2, 3, 3]
    assert topology.nat_namespaces("b") == ["x-cgnb", "x-natb"] and topology.nat_namespaces("a") == ["x-nata"]
    assert {"x-cgnb", "x-cgnc"} <= set(topology.namespaces()) <= set(possible_namespaces("x"))
    assert "x-cgnb" in topology.forwarding_namespaces()
    # the outer NAT keeps the public address; the other kinds' addresses are those of the default lab
    assert f"{nat_outside_address('b')}/24" in [link.addr2 for link in topology.links() if link.ns2 == "x-cgnb"]
    assert {(r.ns, r.destination, r.via) for r in topology.routes() if r.ns == "x-natb"} == {
        ("x-natb", "default", carrier_gateway("b"))}
    plain = Topology("x", path_length=4)
    assert site_links(plain, "a") == site_links(topology, "a")
    assert "DNAT --to-destination 198.18.1.2" in network.nat_rules("eif", "198.18.1.2")
    assert "DNAT" not in network.nat_rules("double") and "MASQUERADE" in network.nat_rules("double")
    with pytest.raises(ValueError):
        network.nat_rules("eif")
