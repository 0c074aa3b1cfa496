"""The lab's shape: namespaces, links and addresses. Pure data, no side effects, so tests and other stages can read
the addresses from here instead of hard-coding them.

::

    <name>-a   198.18.1.2 --lan-- <name>-nata  wan 198.18.11.2 -- [k routers] --\\
    <name>-b   198.18.2.2 --lan-- <name>-natb  wan 198.18.12.2 -- [k routers] ---+-- <name>-inet -- <name>-srv
    <name>-c   198.18.3.2 --lan-- <name>-natc  wan 198.18.13.2 -- [k routers] --/   (router)      198.18.0.10/.11 STUN
                                                                                                  198.18.0.25/.26 mail

``--path-length N`` is the number of routers between two NATs: the hub (``inet``) plus a chain of routers on each
site's side. With one hub, sites a and b get chains of ``ceil((N-1)/2)`` and ``floor((N-1)/2)`` routers and c the
same as b, so a<->b and a<->c have exactly N routers and b<->c has N (odd N) or N-1 (even N).

Everything lives in 198.18.0.0/16; tunnel (payload) addresses use 198.19.0.0/16.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # on PYTHONPATH, a checkout imports in the namespaces
NatKind = Literal["eim", "eim-bare", "symmetric", "none"]
NAT_KINDS: tuple[NatKind, ...] = ("eim", "eim-bare", "symmetric", "none")
SITES = ("a", "b", "c")
SITE_USERS = {"a": "alice", "b": "bob", "c": "carol"}
DEFAULT_NAT: dict[str, NatKind] = {"a": "eim", "b": "eim", "c": "symmetric"}
MAX_PATH_LENGTH = 39  # chain link subnets are numbered 198.18.(100 + 20*i + j).0/24 with j < 20

STUN_PRIMARY = ("198.18.0.10", 3478)
STUN_ALTERNATE = ("198.18.0.11", 3479)
STUN_PLAIN = ("198.18.0.10", 3480)  # an ordinary STUN server (one address: no RFC 5780, as most public ones)
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
            names += [*reversed(self.routers(site)), self.nat_ns(site), self.ns(site)]
        return names

    def forwarding_namespaces(self) -> list[str]:
        return [self.ns("inet"), *(r for s in SITES for r in self.routers(s)), *(self.nat_ns(s) for s in SITES)]

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
            links.append(Link(upper, upper_if, f"{out}.1/24", self.nat_ns(site), "wan",
                              f"{nat_outside_address(site)}/24"))
            links.append(Link(self.nat_ns(site), "lan", f"{lan_gateway(site)}/24", self.ns(site), "eth0",
                              f"{host_address(site)}/24"))
        return links

    def server_addresses(self) -> list[str]:
        """Addresses added to srv's eth0 beyond the first."""
        return [STUN_ALTERNATE[0], MAIL_HOST, MAIL_HOST_NO_IDLE]

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
            routes.append(Route(self.nat_ns(site), "default", f"198.18.1{site_index(site)}.1"))
            routes.append(Route(self.ns(site), "default", lan_gateway(site)))
        return routes

    def punch_hops(self) -> int:
        """TTL of the opening packets: our NAT forwards a packet with TTL >= 2 (leaving 1), the first router
        beyond it drops it (TTL 0). So 2 opens our own NAT and never reaches the peer's NAT, whatever N >= 1;
        any t with 2 <= t <= N+1 would do, 2 keeps the margin largest."""
        return 2
