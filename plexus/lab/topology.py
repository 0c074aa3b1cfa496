"""The lab's shape: namespaces, links and addresses. Pure data, no side effects, so tests and other stages can read
the addresses from here instead of hard-coding them.

::

    <name>-a   198.18.1.2 --lan-- <name>-nata  wan 198.18.11.2 -- [k routers] --\\
    <name>-b   198.18.2.2 --lan-- <name>-natb  wan 198.18.12.2 -- [k routers] ---+-- <name>-inet -- <name>-srv
    <name>-c   198.18.3.2 --lan-- <name>-natc  wan 198.18.13.2 -- [k routers] --/   (router)      198.18.0.10/.11 STUN
                                                                                                  198.18.0.12 TURN
                                                                                                  198.18.0.25/.26 mail

A site of NAT kind ``double`` sits behind two NATs: its home NAT's wan is 198.18.2N.2 on a carrier link to
``<name>-cgnN`` (198.18.2N.1), the carrier-grade NAT whose wan keeps the site's public address 198.18.1N.2::

    <name>-b   198.18.2.2 --lan-- <name>-natb  wan 198.18.22.2 --lan 198.18.22.1-- <name>-cgnb  wan 198.18.12.2 -- ...

``--path-length N`` is the number of routers between two (outermost) NATs: the hub (``inet``) plus a chain of
routers on each site's side. With one hub, sites a and b get chains of ``ceil((N-1)/2)`` and ``floor((N-1)/2)``
routers and c the same as b, so a<->b and a<->c have exactly N routers and b<->c has N (odd N) or N-1 (even N).

Everything lives in 198.18.0.0/16; tunnel (payload) addresses use 198.19.0.0/16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # on PYTHONPATH, a checkout imports in the namespaces
NatKind = Literal["eim", "eim-bare", "eif", "symmetric", "double", "none"]
NAT_KINDS: tuple[NatKind, ...] = ("eim", "eim-bare", "eif", "symmetric", "double", "none")
SITES = ("a", "b", "c")
SITE_USERS = {"a": "alice", "b": "bob", "c": "carol"}
DEFAULT_NAT: dict[str, NatKind] = {"a": "eim", "b": "eim", "c": "symmetric"}
MAX_PATH_LENGTH = 39  # chain link subnets are numbered 198.18.(100 + 20*i + j).0/24 with j < 20

STUN_PRIMARY = ("198.18.0.10", 3478)
STUN_ALTERNATE = ("198.18.0.11", 3479)
STUN_PLAIN = ("198.18.0.10", 3480)  # an ordinary STUN server (one address: no RFC 5780, as most public ones)
TURN_SERVER = ("198.18.0.12", 3478)  # coturn, long-term credentials (one user per site user), realm TURN_REALM
TURN_REST_SERVER = ("198.18.0.12", 3479)  # coturn, TURN REST shared secret (use-auth-secret)
TURN_REALM = "plexus.test"
TURN_RELAY_PORTS = {"turn": (49152, 49499), "turn-rest": (49500, 49999)}  # relayed ports on TURN_SERVER's address
MAIL_HOST = "198.18.0.25"  # IMAPS 993 (IDLE), submission 465 (implicit TLS) and 587 (STARTTLS)
MAIL_HOST_NO_IDLE = "198.18.0.26"  # the same server, but its IMAP CAPABILITY does not offer IDLE
MAIL_DOMAIN = "plexus.test"
MAIL_NAME = "mail.plexus.test"
IMAPS_PORT, SMTPS_PORT, SUBMISSION_PORT = 993, 465, 587
SERVER_SUBNET = "198.18.0.0/24"
HUB_ADDRESS = "198.18.0.1"
TUNNEL_ADDRESSES = {"alice": "198.19.0.1", "bob": "198.19.0.2", "carol": "198.19.0.3"}


def site_index(site: str) -> int:
    return SITES.index(site) + 1


def host_address(site: str) -> str:
    """The site host's own (inner) address, behind its NAT."""
    return f"198.18.{site_index(site)}.2"


def lan_gateway(site: str) -> str:
    return f"198.18.{site_index(site)}.1"


def lan_subnet(site: str) -> str:
    return f"198.18.{site_index(site)}.0/24"


def nat_outside_address(site: str) -> str:
    """The NAT's public (wan) address: what STUN reports for a NATed site host."""
    return f"198.18.1{site_index(site)}.2"


def outside_subnet(site: str) -> str:
    return f"198.18.1{site_index(site)}.0/24"


def home_wan_address(site: str) -> str:
    """NAT kind ``double``: the home NAT's wan address, on the carrier link below the carrier-grade NAT."""
    return f"198.18.2{site_index(site)}.2"


def carrier_gateway(site: str) -> str:
    """NAT kind ``double``: the carrier-grade NAT's inside (lan) address, the home NAT's gateway."""
    return f"198.18.2{site_index(site)}.1"


def chain_subnet_prefix(site: str, hop: int) -> str:
    """``198.18.X`` of the link above chain router ``hop`` (1-based) of ``site``."""
    return f"198.18.{100 + 20 * site_index(site) + hop}"


@dataclass(frozen=True)
class Link:
    """A veth pair: one end in each namespace, each with an address/prefix (or none)."""

    ns1: str
    if1: str
    addr1: str
    ns2: str
    if2: str
    addr2: str


@dataclass(frozen=True)
class Route:
    ns: str
    destination: str  # "default" or a prefix
    via: str


@dataclass(frozen=True)
class Topology:
    """Namespace names and wiring of one lab instance called ``name``."""

    name: str
    path_length: int = 3
    nat: dict[str, NatKind] = field(default_factory=lambda: dict(DEFAULT_NAT))

    def __post_init__(self) -> None:
        if not 1 <= self.path_length <= MAX_PATH_LENGTH:
            raise ValueError(f"path length must be 1..{MAX_PATH_LENGTH}, not {self.path_length}")
        for site, kind in self.nat.items():
            if site not in SITES or kind not in NAT_KINDS:
                raise ValueError(f"bad NAT setting {site}={kind}")

    # namespace names ------------------------------------------------------------------------------------------
    def ns(self, site: str) -> str:
        """Namespace of a site host (``a``/``b``/``c``) or of ``srv``/``inet``."""
        return f"{self.name}-{site}"

    def nat_ns(self, site: str) -> str:
        return f"{self.name}-nat{site}"

    def double(self, site: str) -> bool:
        return self.nat.get(site) == "double"

    def cgn_ns(self, site: str) -> str:
        """The carrier-grade NAT above the home NAT of a site of kind ``double``."""
        return f"{self.name}-cgn{site}"

    def nat_namespaces(self, site: str) -> list[str]:
        """The site's NATs, outermost first: ``[cgn, nat]`` for kind ``double``, else ``[nat]``."""
        return [self.cgn_ns(site), self.nat_ns(site)] if self.double(site) else [self.nat_ns(site)]

    def outer_nat_ns(self, site: str) -> str:
        """The NAT whose wan has the site's public address (``nat_outside_address``)."""
        return self.nat_namespaces(site)[0]

    def router_ns(self, site: str, hop: int) -> str:
        return f"{self.name}-r{site}{hop}"

    def chain_length(self, site: str) -> int:
        rest = self.path_length - 1
        return (rest + 1) // 2 if site == "a" else rest // 2

    def routers(self, site: str) -> list[str]:
        return [self.router_ns(site, hop) for hop in range(1, self.chain_length(site) + 1)]

    def namespaces(self) -> list[str]:
        """Every namespace in creation order (the hub and servers first)."""
        names = [self.ns("inet"), self.ns("srv")]
        for site in SITES:
            names += [*reversed(self.routers(site)), *self.nat_namespaces(site), self.ns(site)]
        return names

    def forwarding_namespaces(self) -> list[str]:
        return [self.ns("inet"), *(r for s in SITES for r in self.routers(s)),
                *(ns for s in SITES for ns in self.nat_namespaces(s))]

    # wiring -------------------------------------------------------------------------------------------------
    def links(self) -> list[Link]:
        inet, srv = self.ns("inet"), self.ns("srv")
        links = [Link(inet, "srv", f"{HUB_ADDRESS}/24", srv, "eth0", f"{STUN_PRIMARY[0]}/24")]
        for site in SITES:
            # from the hub down: hub -> router k -> ... -> router 1 -> NAT -> host
            upper, upper_if = inet, f"to-{site}"
            for hop in range(self.chain_length(site), 0, -1):
                prefix = chain_subnet_prefix(site, hop)
                router = self.router_ns(site, hop)
                links.append(Link(upper, upper_if, f"{prefix}.1/24", router, "hub", f"{prefix}.2/24"))
                upper, upper_if = router, "edge"
            out = outside_subnet(site).rsplit(".", 1)[0]
            links.append(Link(upper, upper_if, f"{out}.1/24", self.outer_nat_ns(site), "wan",
                              f"{nat_outside_address(site)}/24"))
            if self.double(site):
                links.append(Link(self.cgn_ns(site), "lan", f"{carrier_gateway(site)}/24", self.nat_ns(site), "wan",
                                  f"{home_wan_address(site)}/24"))
            links.append(Link(self.nat_ns(site), "lan", f"{lan_gateway(site)}/24", self.ns(site), "eth0",
                              f"{host_address(site)}/24"))
        return links

    def server_addresses(self) -> list[str]:
        """Addresses added to srv's eth0 beyond the first."""
        return [STUN_ALTERNATE[0], TURN_SERVER[0], MAIL_HOST, MAIL_HOST_NO_IDLE]

    def routes(self) -> list[Route]:
        inet, srv = self.ns("inet"), self.ns("srv")
        routes = [Route(srv, "default", HUB_ADDRESS)]
        for site in SITES:
            site_prefixes = (outside_subnet(site), lan_subnet(site))  # lan: reachable only with NAT kind none
            k = self.chain_length(site)
            first_down = chain_subnet_prefix(site, k) + ".2" if k else f"198.18.1{site_index(site)}.2"
            routes += [Route(inet, prefix, first_down) for prefix in site_prefixes
                       if k or prefix != outside_subnet(site)]
            for hop in range(k, 0, -1):
                router = self.router_ns(site, hop)
                routes.append(Route(router, "default", chain_subnet_prefix(site, hop) + ".1"))
                below = chain_subnet_prefix(site, hop - 1) + ".2" if hop > 1 else nat_outside_address(site)
                routes += [Route(router, prefix, below) for prefix in site_prefixes
                           if hop > 1 or prefix != outside_subnet(site)]
            routes.append(Route(self.outer_nat_ns(site), "default", f"198.18.1{site_index(site)}.1"))
            if self.double(site):
                routes.append(Route(self.cgn_ns(site), lan_subnet(site), home_wan_address(site)))
                routes.append(Route(self.nat_ns(site), "default", carrier_gateway(site)))
            routes.append(Route(self.ns(site), "default", lan_gateway(site)))
        return routes

    def nat_hops(self, site: str) -> int:
        """Forwarding hops between a site host and the first router beyond its NATs: 2 for ``double``, else 1."""
        return len(self.nat_namespaces(site))

    def punch_hops(self, site: str) -> int:
        """TTL of ``site``'s opening packets. Each of our m NATs (``nat_hops``: 1, or 2 for ``double``) forwards
        a packet arriving with TTL >= 2 and takes one; the first router beyond them drops it (TTL 0). The N
        routers of ``path_length`` all lie between the outermost NATs, so any t with m+1 <= t <= m+N opens all
        our NATs and never reaches the peer's; m+1 (2, or 3 behind a double NAT) keeps the margin largest,
        whatever N >= 1."""
        return self.nat_hops(site) + 1


def possible_namespaces(name: str) -> list[str]:
    """Every namespace a lab called ``name`` could have (longest path, every site behind a double NAT)."""
    return Topology(name, MAX_PATH_LENGTH, {site: "double" for site in SITES}).namespaces()
