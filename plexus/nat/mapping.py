"""What ``plexus up`` needs before it asks a peer to meet: our public endpoint and the NAT's mapping behaviour
(RFC 5780 §4.3), asked through the very port that will punch, so the mapping found is the one used.

Mapping test: Binding to the server's primary address, then from the same port to its OTHER-ADDRESS (alternate
IP and port). The same public endpoint both times means endpoint-independent mapping (EIM). Otherwise a third
request to (alternate IP, primary port) tells address-dependent (same answer as the second) from
address-and-port-dependent. A mapped address equal to our local one means there is no NAT.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from typing import Literal

from plexus.errors import NatError
from plexus.nat.client import Binding, StunClient, local_address_toward, resolve
from plexus.nat.message import Address
from plexus.profile.model import Endpoint, Stun
from plexus.udp import UdpPort

# "unknown": one STUN server without RFC 5780 answered, so the mapping could not be tested; plexus tries direct.
Mapping = Literal["none", "endpoint-independent", "address-dependent", "address-and-port-dependent", "unknown"]
HARD: frozenset[Mapping] = frozenset({"address-dependent", "address-and-port-dependent"})  # a port per destination

STILL_WORKS_MARK = "; what would still work: "
_STILL_WORKS = ("a peer with a public address, a forwarded UDP port or a NAT that accepts "
                "packets from any sender; forwarding a UDP port on this router to this machine; or running "
                "plexus on a machine with a public address or a NAT that keeps one public port per local port "
                "(most home routers do)")


def punchable(mapping: Mapping) -> tuple[bool, str]:
    """Whether hole punching can work from behind this mapping, and why, in words for a non-expert."""
    if mapping == "none":
        return True, ("there is no NAT: your public endpoint is your local one, so the peer can send straight "
                      "to it (a firewall must still let UDP in on this port)")
    if mapping == "endpoint-independent":
        return True, ("your NAT keeps one public port for this local port whatever the destination, so the "
                      "peer can send to the port the STUN server saw")
    if mapping == "unknown":
        return True, ("the STUN server cannot test the mapping (no RFC 5780 OTHER-ADDRESS, and no second server "
                      "to compare with), so plexus tries a direct punch; give stun.servers a second server at "
                      "another address, or an RFC 5780 server, to know in advance")
    if mapping == "address-dependent":
        return False, ("your NAT gives a new public port for every host you talk to, so the peer cannot know "
                       f"which port to send to{STILL_WORKS_MARK}{_STILL_WORKS}")
    return False, ("your NAT gives a new public port for every destination, so the peer cannot know which port "
                   f"to send to{STILL_WORKS_MARK}{_STILL_WORKS}")


@dataclass(frozen=True)
class Discovery:
    """Our endpoints and the NAT's mapping behaviour, as found through one UDP port."""

    inner: Address  # our local endpoint (the address the kernel uses toward the server when bound to 0.0.0.0)
    outer: Address  # our public endpoint as the STUN server saw it
    mapping: Mapping
    server: Endpoint  # the STUN server that answered (as written in the profile)
    other: Address | None  # its alternate endpoint (OTHER-ADDRESS), if it has one
    timings: dict[str, float] = field(default_factory=dict)  # seconds: binding, mapping, total

    @property
    def nat(self) -> bool:
        return self.mapping != "none"

    @property
    def port_preserved(self) -> bool:
        return self.inner[1] == self.outer[1]


async def first_answers(client: StunClient, servers: tuple[Endpoint, ...]) -> list[tuple[Endpoint, Binding]]:
    """Ask every server at once through ``client``'s port; return the answers in arrival order, stopping at the
    first that gives an alternate address (or at the second answer, which can stand in for one).

    NatError naming each server when none answers."""
    if not servers:
        raise NatError("no STUN server configured", hint="add one to stun.servers or give --server HOST:PORT")
    family = socket.AF_INET6 if ":" in client.port.local[0] else socket.AF_INET

    async def ask(server: Endpoint) -> tuple[Endpoint, Binding]:
        address = await resolve(server, family, client.timeout)
        return server, await client.binding(address, label=str(server))

    tasks = [asyncio.create_task(ask(server)) for server in servers]
    answers: list[tuple[Endpoint, Binding]] = []
    failures: list[NatError] = []
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=tasks.index):
                error = task.exception()
                if error is None:
                    answers.append(task.result())
                elif isinstance(error, NatError):
                    failures.append(error)
                else:
                    raise error
            if answers and (answers[0][1].other is not None or len(answers) >= 2):
                break
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    if answers:
        return answers
    if len(failures) == 1:
        raise failures[0]
    raise NatError("no STUN server answered: " + "; ".join(error.message for error in failures),
                   hint="check stun.servers and that UDP to them is not blocked")


async def discover(port: UdpPort, stun: Stun) -> Discovery:
    """Our public endpoint and mapping behaviour, asked through ``port`` (left open: the punch reuses it).

    Servers are asked in parallel; the first good answer wins. NatError naming the server when a name does not
    resolve, nothing answers, or the server cannot test the mapping."""
    started = time.monotonic()
    async with StunClient(port, rto=stun.rto, timeout=stun.timeout) as client:
        answers = await first_answers(client, stun.servers)
        server, first = next((a for a in answers if a[1].other is not None), answers[0])
        binding_done = time.monotonic()
        inner = local_address_toward(port, first.server)
        if first.mapped == inner:
            mapping: Mapping = "none"
        elif first.other is not None:
            mapping = await _mapping_behaviour(client, server, first)
        else:
            mapping = _mapping_from_two_servers(answers)
        finished = time.monotonic()
    timings = {"binding": binding_done - started, "mapping": finished - binding_done, "total": finished - started}
    return Discovery(inner, first.mapped, mapping, server, first.other, timings)


async def _mapping_behaviour(client: StunClient, server: Endpoint, first: Binding) -> Mapping:
    assert first.other is not None
    label = f"{first.other[0]}:{first.other[1]} (the alternate address of {server})"
    second = await client.binding(first.other, label=label)
    if second.mapped == first.mapped:
        return "endpoint-independent"
    alternate_ip = (first.other[0], first.server[1])
    third = await client.binding(alternate_ip, label=f"{alternate_ip[0]}:{alternate_ip[1]} (alternate IP of {server})")
    # Same answer from the same alternate IP on two ports: the mapping follows the address only. A port-dependent
    # mapping (third == first) is, like any other, "address and port dependent" in RFC 4787's terms.
    return "address-dependent" if third.mapped == second.mapped else "address-and-port-dependent"


def _mapping_from_two_servers(answers: list[tuple[Endpoint, Binding]]) -> Mapping:
    """Without OTHER-ADDRESS, a second server at another IP and port stands in for the alternate address."""
    (_, first), *others = answers
    witness = next((b for _, b in others if b.server[0] != first.server[0] and b.server[1] != first.server[1]),
                   None)
    if witness is None:  # one ordinary server: it cannot tell, so try a direct punch rather than refuse
        return "unknown"
    # Two destinations differing in address and port: the same mapping proves EIM; a different one cannot tell
    # address-dependent from address-and-port-dependent, so it takes the stricter name (neither can punch).
    return "endpoint-independent" if witness.mapped == first.mapped else "address-and-port-dependent"
