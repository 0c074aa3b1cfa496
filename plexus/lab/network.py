"""Build and remove the lab's namespaces, links, routes and NATs, and change NAT kind or netem at runtime.

NAT kinds (iptables in the site's NAT namespace; wan = outside, lan = the site host):

- ``eim``: MASQUERADE (keeps the source port when free = endpoint-independent mapping), forwards only replies
  inward, and drops unsolicited packets to the NAT itself (INPUT), as home routers do. Such a dropped packet
  leaves no confirmed conntrack entry, so it cannot disturb a later outbound mapping.
- ``eim-bare``: the same without the INPUT drop. A peer's early packet then creates a conntrack entry for the
  public port, and our later outbound flow gets another port ("conntrack clash", see testbed.md).
- ``symmetric``: MASQUERADE --random-fully: a fresh public port per destination (address-and-port-dependent).
- ``none``: no NAT and no filter: the NAT namespace is a plain router and the site host is reachable at its
  own address (198.18.N.2), which is then its public address.
"""

from __future__ import annotations

import sys

from plexus.errors import LabError
from plexus.lab import daemons, system
from plexus.lab.state import LabState
from plexus.lab.topology import MAX_PATH_LENGTH, SITES, SOURCE_ROOT, NatKind, Topology


def build(topology: Topology, state: LabState) -> None:
    """Create every namespace (journalled first), link, address and route, and each site's NAT."""
    namespaces = topology.namespaces()
    for namespace in namespaces:
        state.record_namespace(namespace)
    system.run_batch(["netns", "add", ns] for ns in namespaces)
    system.run_batch(["link", "add", link.if1, "netns", link.ns1, "type", "veth", "peer", "name", link.if2,
                      "netns", link.ns2] for link in topology.links())
    per_ns: dict[str, list[list[str]]] = {ns: [["link", "set", "lo", "up"]] for ns in namespaces}
    for link in topology.links():
        for ns, ifname, address in ((link.ns1, link.if1, link.addr1), (link.ns2, link.if2, link.addr2)):
            per_ns[ns] += [["addr", "add", address, "dev", ifname], ["link", "set", "dev", ifname, "up"]]
    srv = topology.ns("srv")
    per_ns[srv] += [["addr", "add", f"{address}/24", "dev", "eth0"] for address in topology.server_addresses()]
    for route in topology.routes():
        per_ns[route.ns].append(["route", "add", route.destination, "via", route.via])
    for ns, commands in per_ns.items():
        system.run(["ip", "-n", ns, "-batch", "-"], input="".join(" ".join(c) + "\n" for c in commands))
    for ns in topology.forwarding_namespaces():
        system.set_sysctl(ns, "net.ipv4.ip_forward", "1")
    for site in SITES:
        set_nat(topology, site, topology.nat[site], flush=False)


def destroy(state: LabState) -> None:
    """Stop whatever still runs in the lab's namespaces and delete them (namespaces that never got created
    are skipped). Without a journal (state directory lost), every name this lab could have used is tried."""
    namespaces = state.namespaces() or existing_namespaces(Topology(state.name, MAX_PATH_LENGTH).namespaces())
    system.stop_pids(system.netns_pids(namespaces), grace=0.5)
    if namespaces:
        system.run(["ip", "-force", "-batch", "-"], check=False,
                   input="".join(f"netns del {ns}\n" for ns in namespaces))


def existing_namespaces(names: list[str]) -> list[str]:
    done = system.run(["ip", "netns", "list"], check=False)
    present = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    return [name for name in names if name in present]


def nat_rules(kind: NatKind) -> str:
    """The iptables-restore input for a NAT of this kind (replaces the nat and filter tables whole)."""
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]"]
    filters = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if kind != "none":
        nat.append("-A POSTROUTING -o wan -j MASQUERADE" + (" --random-fully" if kind == "symmetric" else ""))
        filters += ["-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                    "-A FORWARD -i wan -j DROP"]
    if kind in ("eim", "symmetric"):
        filters += ["-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                    "-A INPUT -i wan -j DROP"]
    return "\n".join([*nat, "COMMIT", *filters, "COMMIT", ""])


def set_nat(topology: Topology, site: str, kind: NatKind, *, flush: bool = True) -> None:
    """Replace the NAT rules of ``site`` and forget its connection tracking state, so the next flow is mapped
    by the new rules."""
    ns = topology.nat_ns(site)
    system.run(["ip", "netns", "exec", ns, "iptables-restore"], input=nat_rules(kind))
    if flush:
        system.flush_conntrack(ns)


def set_netem(topology: Topology, state: LabState, loss_pct: float = 0.0, delay_ms: float = 0.0) -> None:
    """Loss and delay on every NAT's outside link, in both directions (each forwarded packet is dropped with
    probability ``loss_pct``% and held ``delay_ms`` ms). This kernel has no sch_netem, so loss is an iptables
    ``statistic`` rule and delay an NFQUEUE rule served by ``plexus.lab.shaper``, one per NAT namespace."""
    if not 0 <= loss_pct <= 100 or delay_ms < 0:
        raise LabError(f"bad netem setting: loss {loss_pct}% delay {delay_ms} ms",
                       hint="loss 0..100 (percent), delay >= 0 (ms)")
    labels = [f"shaper-{site}" for site in SITES]
    daemons.stop(state, labels, grace=0.5)
    if delay_ms > 0:
        started = {}
        for site, label in zip(SITES, labels, strict=True):
            (state.logs / f"{label}.out").unlink(missing_ok=True)
            started[label] = daemons.start(state, topology.nat_ns(site), label,
                                           [sys.executable, "-m", "plexus.lab.shaper", "--delay-ms", f"{delay_ms:g}"],
                                           env={"PYTHONPATH": SOURCE_ROOT})
        for label, pid in started.items():
            log = state.logs / f"{label}.out"
            daemons.wait_until(lambda log=log: log.exists() and "delaying" in log.read_text(),  # type: ignore[misc]
                               f"delay shaper {label}", state, pids=[pid], logs=[f"{label}.out"])
    rules = ["*mangle", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]",
             ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    if loss_pct > 0:
        rules.append(f"-A FORWARD -m statistic --mode random --probability {loss_pct / 100:.6f} -j DROP")
    if delay_ms > 0:
        rules.append("-A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass")
    for site in SITES:
        system.run(["ip", "netns", "exec", topology.nat_ns(site), "iptables-restore"],
                   input="\n".join([*rules, "COMMIT", ""]))
