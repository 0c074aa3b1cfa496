"""NAT discovery end to end in the lab: real coturn (RFC 5780) behind real NATs (namespaces + iptables).

Site a sits behind `eim` (MASQUERADE), site c behind `symmetric` (MASQUERADE --random-fully); `none` makes a site
a public host. Each `plexus nat` here is the real command in the site's namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from plexus.errors import NatError

# Runs in a site namespace: discover through one port, then again through the same (still open) port, and
# through 20% loss when asked. Prints the findings as JSON.
DISCOVER_TWICE = r"""
import asyncio, json, sys
from plexus.nat import discover
from plexus.profile.model import Endpoint, Stun
from plexus.udp import UdpPort

async def main():
    stun = Stun(servers=(Endpoint(sys.argv[1], int(sys.argv[2])),), timeout=float(sys.argv[3]), rto=0.1)
    async with await UdpPort.bind(Endpoint("0.0.0.0", 0)) as port:
        first = await discover(port, stun)
        second = await discover(port, stun)
        print(json.dumps({"local": list(port.local), "inner": list(first.inner), "outers": [list(first.outer),
              list(second.outer)], "mappings": [first.mapping, second.mapping], "listeners": len(port._listeners),
              "timings": first.timings}))

asyncio.run(main())
"""


def plexus_nat(site_run: Any, site: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = site_run(site, ["plexus", "nat", "--json", *args], timeout=30)
    assert done.stdout, f"plexus nat in site {site} printed no report (exit {done.returncode}): {done.stderr}"
    assert "Traceback" not in done.stderr
    return done.returncode, json.loads(done.stdout)


def test_eim_site_is_endpoint_independent_with_the_nat_address_as_public(lab: Any, site_run: Any) -> None:
    code, report = plexus_nat(site_run, "a")
    assert code == 0
    assert report["mapping"] == "endpoint-independent" and report["nat"] is True
    assert report["public"].split(":")[0] == lab.nat_outside_address("a")
    assert report["local"].split(":")[0] == lab.host_address("a")
    assert report["port_preserved"] is True  # MASQUERADE keeps a free source port
    assert report["filtering"] == "address-and-port-dependent"  # the lab's NAT drops unsolicited packets
    assert isinstance(report["hairpin"], bool)  # tested, since there is a NAT
    assert report["punchable"] is True and report["verdict"].startswith("hole punching: possible")
    assert report["server"] == f"{lab.stun_primary[0]}:{lab.stun_primary[1]}"
    assert report["other"] == f"{lab.stun_alternate[0]}:{lab.stun_alternate[1]}"


def test_symmetric_site_cannot_punch_and_is_told_why(lab: Any, site_run: Any) -> None:
    code, report = plexus_nat(site_run, "c")
    assert code == NatError.exit_code
    assert report["mapping"] == "address-and-port-dependent"
    assert report["public"].split(":")[0] == lab.nat_outside_address("c")
    assert report["punchable"] is False
    assert report["verdict"].startswith("hole punching: not possible, because your NAT gives a new public port "
                                        "for every destination")
    assert "what would still work:" in report["verdict"]


def test_symmetric_site_table_says_not_possible(site_run: Any) -> None:
    done = site_run("c", ["plexus", "nat"], timeout=30)
    assert done.returncode == NatError.exit_code
    assert "not possible, because" in done.stdout and "what still works" in done.stdout


def test_public_host_has_no_nat(lab: Any, site_run: Any, lab_settings: Any) -> None:
    lab_settings.set_nat("a", "none")
    code, report = plexus_nat(site_run, "a")
    assert code == 0
    assert report["mapping"] == "none" and report["nat"] is False
    assert report["public"] == report["local"]
    assert report["public"].split(":")[0] == lab.host_address("a")
    assert report["hairpin"] is None


@pytest.mark.parametrize(("site", "expected"), [("a", "endpoint-independent"),
                                                ("c", "address-and-port-dependent")])
def test_discover_leaves_the_port_open_with_its_mapping(lab: Any, site_run: Any, site: str, expected: str) -> None:
    host, port = lab.stun_primary
    done = site_run(site, [sys.executable, "-c", DISCOVER_TWICE, host, str(port), "3"])
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["mappings"] == [expected, expected]
    assert found["listeners"] == 0  # discover took its STUN listener away: punch packets reach the punch
    assert found["inner"] == [lab.host_address(site), found["local"][1]]
    if expected == "endpoint-independent":  # the same port keeps the same public mapping: what the punch uses
        assert found["outers"][0] == found["outers"][1]


def test_discover_retransmits_through_loss(lab: Any, site_run: Any) -> None:
    # Every other STUN request leaving site a's NAT is dropped (iptables; this kernel has no netem), so each
    # transaction needs its retransmission, sent with the same transaction id.
    rule = ["FORWARD", "-i", "lan", "-p", "udp", "--dport", "3478:3479", "-m", "statistic", "--mode", "nth",
            "--every", "2", "--packet", "0", "-j", "DROP"]
    iptables = ["ip", "netns", "exec", lab.nat_ns("a"), "iptables"]
    subprocess.run([*iptables, "-I", *rule], check=True, timeout=10)
    try:
        host, port = lab.stun_primary
        done = site_run("a", [sys.executable, "-c", DISCOVER_TWICE, host, str(port), "3"], timeout=60)
        counters = subprocess.run([*iptables, "-L", "FORWARD", "-v", "-x", "-n"], capture_output=True, text=True,
                                  check=True, timeout=10).stdout
    finally:
        subprocess.run([*iptables, "-D", *rule], check=True, timeout=10)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["mappings"] == ["endpoint-independent"] * 2
    dropped = next(int(line.split()[0]) for line in counters.splitlines() if "statistic" in line)
    assert dropped >= 3  # one request of each of the first discovery's two transactions, and more later
    assert found["timings"]["binding"] >= 0.1  # the answer came to the retransmission after one RTO


def test_unanswering_server_is_named(site_run: Any) -> None:
    done = site_run("a", ["plexus", "nat", "--server", "198.18.0.10:9", "--json"], timeout=30)
    assert done.returncode == NatError.exit_code and done.stdout == ""
    assert done.stderr.startswith("plexus: no answer from STUN server 198.18.0.10:9 within 3 s")
    assert done.stderr.count("\n") == 1
