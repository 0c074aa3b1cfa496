"""STUN Binding transactions over a shared ``UdpPort`` (RFC 5389 §7.2.1).

One ``StunClient`` is one listener on the port. It consumes only datagrams that carry the transaction id of one
of its own open requests, so that the punch's packets (and another client's STUN replies) arriving on the same
port go to their own listeners. Retransmissions repeat the SAME transaction id — unlike the original tool — so a
late reply to an earlier send still completes the transaction.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from aioice import stun

from plexus.errors import NatError
from plexus.nat import message
from plexus.nat.message import Address, Malformed
from plexus.profile.model import Endpoint
from plexus.udp import UdpPort

log = logging.getLogger(__name__)

REQUESTS_MAX = 7  # Rc: requests per transaction (RFC 5389 §7.2.1)
LAST_WAIT = 16  # Rm: after the last request, wait Rm * RTO


def retransmission_schedule(rto: float, deadline: float) -> Iterator[float]:
    """Offsets (seconds from the first send) at which requests go out: 0, RTO, 3 RTO, 7 RTO, ... (Rc at most),
    only those before ``deadline`` (the first always goes). The doubling interval is capped so that all Rc
    requests fit into the deadline: on a lossy path seven tries in 3 s beat five."""
    offset, interval = 0.0, rto
    cap = max(rto, deadline / REQUESTS_MAX)
    for _ in range(REQUESTS_MAX):
        if offset and offset >= deadline:
            return
        yield offset
        offset += interval
        interval = min(interval * 2, cap)


@dataclass(frozen=True)
class Binding:
    """One answered Binding request."""

    server: Address  # where the request went
    mapped: Address  # our endpoint as the server saw it
    source: Address  # where the reply came from
    other: Address | None  # the server's alternate endpoint (OTHER-ADDRESS), if it has one
    origin: Address | None  # RESPONSE-ORIGIN, if given
    rtt: float  # seconds from the first send to the reply
    sends: int  # requests sent (1 + retransmissions)


@dataclass
class _Transaction:
    request: stun.Message
    destination: Address
    label: str  # how the user knows the destination, for messages
    accept_from: frozenset[Address]
    loopback: bool  # hairpin test: our own request coming back counts as an answer
    future: asyncio.Future[tuple[stun.Message, Address]]
    started: float = 0.0
    sends: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, problem: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(problem)


class StunClient:
    """Binding transactions through ``port``; use as ``async with StunClient(port, rto, timeout) as client``."""

    def __init__(self, port: UdpPort, *, rto: float = 0.1, timeout: float = 3.0) -> None:
        if rto <= 0 or timeout <= 0:
            raise NatError(f"STUN timers must be positive (rto {rto}, timeout {timeout})")
        self.port = port
        self.rto = rto
        self.timeout = timeout
        self.ignored = 0  # datagrams with our transaction id that we dropped (malformed, wrong source)
        self._pending: dict[bytes, _Transaction] = {}
        port.add_listener(self._on_datagram)

    async def __aenter__(self) -> StunClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.port.remove_listener(self._on_datagram)
        for transaction in self._pending.values():
            if not transaction.future.done():
                transaction.future.cancel()
        self._pending.clear()

    async def binding(self, server: Address, *, label: str | None = None, change_ip: bool = False,
                      change_port: bool = False, reply_from: Address | None = None,
                      deadline: float | None = None) -> Binding:
        """Ask ``server`` for our mapped address. ``reply_from`` is the only source accepted (default: the
        server itself; a CHANGE-REQUEST names the alternate). NatError when no answer comes within ``deadline``
        (default: the client's timeout) or the server answers with an error."""
        request = message.binding_request(change_ip=change_ip, change_port=change_port)
        destination = message.normalize(server)
        expected = message.normalize(reply_from) if reply_from else destination
        name = label or _text(destination)
        answer, source, transaction = await self._transact(request, destination, name, frozenset({expected}),
                                                           loopback=False, deadline=deadline)
        if answer.message_class == stun.Class.ERROR:
            raise NatError(f"STUN server {name} refused the binding request: {message.error_text(answer)}",
                           hint="check stun.servers: is it a STUN server?")
        return Binding(destination, message.mapped_address(answer), source, message.other_address(answer),
                       message.response_origin(answer), time.monotonic() - transaction.started,
                       transaction.sends)

    async def probe(self, server: Address, *, deadline: float, label: str | None = None,
                    change_ip: bool = False, change_port: bool = False,
                    reply_from: Address | None = None) -> Binding | None:
        """Like ``binding`` for tests where silence is an answer (filtering): None when nothing came."""
        try:
            return await self.binding(server, label=label, change_ip=change_ip, change_port=change_port,
                                      reply_from=reply_from, deadline=deadline)
        except _Timeout:
            return None

    async def loops_back(self, outer: Address, *, deadline: float) -> bool:
        """Hairpin test: send a Binding request to our own public endpoint; True when it (or any answer to it)
        comes back to this port within ``deadline``."""
        request = message.binding_request()
        destination = message.normalize(outer)
        try:
            await self._transact(request, destination, f"our own public endpoint {_text(destination)}",
                                 frozenset(), loopback=True, deadline=deadline)
        except _Timeout:
            return False
        return True

    async def _transact(self, request: stun.Message, destination: Address, label: str,
                        accept_from: frozenset[Address], *, loopback: bool,
                        deadline: float | None) -> tuple[stun.Message, Address, _Transaction]:
        loop = asyncio.get_running_loop()
        transaction = _Transaction(request, destination, label, accept_from, loopback, loop.create_future())
        self._pending[request.transaction_id] = transaction
        data = bytes(request)
        budget = min(self.timeout, deadline) if deadline is not None else self.timeout
        transaction.started = time.monotonic()
        try:
            schedule = list(retransmission_schedule(self.rto, budget))
            schedule.append(min(budget, schedule[-1] + LAST_WAIT * self.rto))
            for offset, next_offset in itertools.pairwise(schedule):
                self._send(data, transaction)
                wait = next_offset - (time.monotonic() - transaction.started)
                if wait > 0:
                    done, _ = await asyncio.wait({transaction.future}, timeout=wait)
                    if done:
                        answer, source = transaction.future.result()
                        return answer, source, transaction
                log.debug("STUN %s: no answer %.3f s after send %d", label, next_offset - offset,
                          transaction.sends)
        finally:
            self._pending.pop(request.transaction_id, None)
        raise _Timeout(label, budget, transaction.sends, transaction.problems)

    def _send(self, data: bytes, transaction: _Transaction) -> None:
        try:
            self.port.sendto(data, transaction.destination)
        except (OSError, ValueError) as error:  # e.g. an IPv6 server on an IPv4 socket
            raise NatError(f"cannot send to STUN server {transaction.label}: {error}") from error
        transaction.sends += 1

    def _on_datagram(self, data: bytes, source: Address) -> bool:
        transaction_id = message.transaction_id_of(data)
        transaction = self._pending.get(transaction_id) if transaction_id else None
        if transaction is None or transaction.future.done():
            return False  # not ours (maybe a punch packet, or another client's STUN reply)
        source = message.normalize(source)
        try:
            answer = message.decode(data)
            if answer.message_method != stun.Method.BINDING:
                raise Malformed(f"method {answer.message_method.name}, expected BINDING")
            if transaction.loopback:
                transaction.future.set_result((answer, source))
                return True
            if answer.message_class not in (stun.Class.RESPONSE, stun.Class.ERROR):
                raise Malformed(f"a {answer.message_class.name.lower()}, expected a response")
            if source not in transaction.accept_from:
                raise Malformed(f"from {_text(source)}, expected {' or '.join(map(_text, transaction.accept_from))}")
            if answer.message_class == stun.Class.RESPONSE:
                message.mapped_address(answer)  # a success without our address is as good as garbage
        except Malformed as error:
            self.ignored += 1
            transaction.note(str(error))
            log.debug("STUN %s: ignored a reply: %s", transaction.label, error)
            return True
        transaction.future.set_result((answer, source))
        return True


class _Timeout(NatError):
    def __init__(self, label: str, budget: float, sends: int, problems: list[str]) -> None:
        detail = f"; ignored replies: {'; '.join(problems)}" if problems else ""
        super().__init__(f"no answer from STUN server {label} within {budget:g} s ({sends} requests){detail}",
                         hint="check the address and that UDP to it is not blocked")


def _text(address: Address) -> str:
    return str(Endpoint(address[0], address[1]))


async def resolve(server: Endpoint, family: socket.AddressFamily, timeout: float) -> Address:
    """The IP address and port of a STUN server; NatError naming it when the name does not resolve."""
    try:
        ipaddress.ip_address(server.host)
        return message.normalize((server.host, server.port))
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(server.host, server.port, family=family, type=socket.SOCK_DGRAM), timeout)
    except (OSError, TimeoutError) as error:
        reason = "timed out" if isinstance(error, TimeoutError) else getattr(error, "strerror", None) or error
        raise NatError(f"STUN server {server}: the name {server.host!r} does not resolve ({reason})",
                       hint="check stun.servers in the profile, or give --server IP:PORT") from error
    if not infos:
        raise NatError(f"STUN server {server}: the name {server.host!r} has no address of this family")
    address = infos[0][4]
    return message.normalize((str(address[0]), int(address[1])))


def local_address_toward(port: UdpPort, server: Address) -> Address:
    """Our inner endpoint as seen on the wire toward ``server``: the bound address, or if bound to the wildcard,
    the source address the kernel would choose (a connected UDP socket's name; no packet is sent)."""
    host, number = port.local
    if not ipaddress.ip_address(host).is_unspecified:
        return message.normalize((host, number))
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(server)
            return message.normalize((probe.getsockname()[0], number))
        except OSError:
            return (host, number)
