"""Build and remove the lab's namespaces, links, routes and NATs, and change NAT kind or netem at runtime.

NAT kinds (iptables in the site's NAT namespace; wan = outside, lan = the site host):

- ``eim``: MASQUERADE (keeps the source port when free = endpoint-independent mapping), forwards only replies
  inward, and drops unsolicited packets to the NAT itself (INPUT), as home routers do. Such a dropped packet
  leaves no confirmed conntrack entry, so it cannot disturb a later outbound mapping.
- ``eim-bare``: the same without the INPUT drop. A peer's early packet then creates a conntrack entry for the
  public port, and our later outbound flow gets another port ("conntrack clash", see testbed.md).
- ``eif``: "full cone": endpoint-independent mapping (MASQUERADE, as ``eim``) and endpoint-independent
  filtering: every UDP packet arriving on the wan is DNATed to the site host on the same port. Since the NAT
  keeps a free source port, a mapped public port is the host's own, so anyone may send to a mapping once it
  exists (``plexus nat``: filtering endpoint-independent). Other protocols are filtered as with ``eim``.
- ``symmetric``: MASQUERADE --random-fully: a fresh public port per destination (address-and-port-dependent).
- ``double``: two NATs, both ``eim``: the home NAT (the site's NAT namespace) sits on a carrier link below a
  carrier-grade NAT (``<name>-cgnN``) whose wan has the site's public address. STUN sees the carrier's address;
  the mapping stays endpoint-independent (both keep free source ports); opening packets need TTL 3
  (``Topology.punch_hops``). Switching a running site to or from ``double`` rewires its NAT stage (``rewire``).
- ``none``: no NAT and no filter: the NAT namespace is a plain router and the site host is reachable at its
  own address (198.18.N.2), which is then its public address.
"""

from __future__ import annotations

import sys

from plexus.errors import LabError
from plexus.lab import daemons, system
from plexus.lab.state import LabState
from plexus.lab.topology import SITES, SOURCE_ROOT, NatKind, Topology, host_address, possible_namespaces


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
        _apply_rules(topology, site, topology.nat[site], flush=False)


def destroy(state: LabState) -> None:
    """Stop whatever still runs in the lab's namespaces and delete them (namespaces that never got created
    are skipped). Without a journal (state directory lost), every name this lab could have used is tried."""
    namespaces = state.namespaces() or existing_namespaces(possible_namespaces(state.name))
    system.stop_pids(system.netns_pids(namespaces), grace=0.5)
    if namespaces:
        system.run(["ip", "-force", "-batch", "-"], check=False,
                   input="".join(f"netns del {ns}\n" for ns in namespaces))


def existing_namespaces(names: list[str]) -> list[str]:
    done = system.run(["ip", "netns", "list"], check=False)
    present = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    return [name for name in names if name in present]


def nat_rules(kind: NatKind, host: str | None = None) -> str:
    """The iptables-restore input for a NAT of this kind (replaces the nat and filter tables whole). ``eif``
    needs the site ``host`` address (the DNAT target); ``double`` gives the home NAT's rules (``eim``, as the
    carrier-grade NAT above it)."""
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
           ":POSTROUTING ACCEPT [0:0]"]
    filters = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if kind == "eif":
        if not host:
            raise ValueError("NAT kind eif needs the site host address")
        nat.append(f"-A PREROUTING -i wan -p udp -j DNAT --to-destination {host}")
    if kind != "none":
        nat.append("-A POSTROUTING -o wan -j MASQUERADE" + (" --random-fully" if kind == "symmetric" else ""))
        filters.append("-A FORWARD -i wan -o lan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")
        if kind == "eif":
            filters.append("-A FORWARD -i wan -o lan -p udp -m conntrack --ctstate DNAT -j ACCEPT")
        filters.append("-A FORWARD -i wan -j DROP")
    if kind in ("eim", "eif", "symmetric", "double"):
        filters += ["-A INPUT -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                    "-A INPUT -i wan -j DROP"]
    return "\n".join([*nat, "COMMIT", *filters, "COMMIT", ""])


def set_nat(topology: Topology, site: str, kind: NatKind, state: LabState) -> Topology:
    """Switch ``site`` of a running lab (now wired as ``topology``) to NAT kind ``kind``: rules replaced and its
    connection tracking forgotten, so the next flow is mapped by the new rules; to or from ``double`` the NAT
    stage is rewired first. Returns the new topology."""
    new = Topology(topology.name, topology.path_length, {**topology.nat, site: kind})
    if topology.double(site) != new.double(site):
        rewire(topology, new, site, state)
    _apply_rules(new, site, kind)
    return new


def _apply_rules(topology: Topology, site: str, kind: NatKind, *, flush: bool = True) -> None:
    namespaces = topology.nat_namespaces(site)
    for ns in namespaces:  # a double site's carrier-grade NAT is eim; its home NAT gets the "double" rules
        rules = nat_rules("eim") if ns != topology.nat_ns(site) else nat_rules(kind, host_address(site))
        system.run(["ip", "netns", "exec", ns, "iptables-restore"], input=rules)
        if flush:
            system.flush_conntrack(ns)


def rewire(old: Topology, new: Topology, site: str, state: LabState) -> None:
    """Replace the links between ``site``'s NAT namespace and the router above it: from one NAT to two (a new
    carrier-grade NAT namespace) or back. The host, its NAT namespace (with its netem rules) and the routers
    stay; the links that differ are deleted and created, and the routes of the namespaces involved set again."""
    cgn = new.cgn_ns(site)
    if new.double(site):
        state.record_namespace(cgn)
        system.run(["ip", "netns", "add", cgn])
    gone = [link for link in old.links() if link not in new.links()]
    made = [link for link in new.links() if link not in old.links()]
    for link in gone:  # deleting one end of a veth pair deletes both (and the routes through them)
        system.run(["ip", "-n", link.ns2, "link", "del", link.if2])
    if old.double(site):
        system.stop_pids(system.netns_pids([cgn]), grace=0.3)
        system.run(["ip", "netns", "del", cgn])
    system.run_batch(["link", "add", link.if1, "netns", link.ns1, "type", "veth", "peer", "name", link.if2,
                      "netns", link.ns2] for link in made)
    touched = {ns for link in made for ns in (link.ns1, link.ns2)}
    per_ns: dict[str, list[list[str]]] = {ns: [] for ns in touched}
    if new.double(site):
        per_ns[cgn].append(["link", "set", "lo", "up"])
    for link in made:
        for ns, ifname, address in ((link.ns1, link.if1, link.addr1), (link.ns2, link.if2, link.addr2)):
            per_ns[ns] += [["addr", "add", address, "dev", ifname], ["link", "set", "dev", ifname, "up"]]
    for route in new.routes():
        if route.ns in touched:
            per_ns[route.ns].append(["route", "replace", route.destination, "via", route.via])
    for ns, commands in per_ns.items():
        system.run(["ip", "-n", ns, "-batch", "-"], input="".join(" ".join(c) + "\n" for c in commands))
    if new.double(site):
        system.set_sysctl(cgn, "net.ipv4.ip_forward", "1")


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
