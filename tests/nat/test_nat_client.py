"""The STUN transaction layer against a scripted responder on loopback: retransmission with one transaction id,
late replies, foreign ids, strange sources, error responses and hand-made garbage datagrams."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from aioice import stun

from plexus.errors import NatError
from plexus.nat import message
from plexus.nat.client import StunClient, retransmission_schedule
from plexus.profile.model import Endpoint
from plexus.udp import UdpPort

Address = tuple[str, int]
RTO = 0.02
TIMEOUT = 0.5


def success(request: stun.Message, mapped: Address, **attributes: object) -> bytes:
    reply = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id)
    reply.attributes["XOR-MAPPED-ADDRESS"] = mapped
    reply.attributes.update(attributes)
    return bytes(reply)


class Responder(asyncio.DatagramProtocol):
    """A loopback UDP endpoint that records requests and answers as the test's ``script`` says."""

    def __init__(self, script: Callable[[Responder, stun.Message, Address], None]) -> None:
        self.script = script
        self.requests: list[stun.Message] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:  # type: ignore[override]
        request = stun.parse_message(data)
        self.requests.append(request)
        self.script(self, request, addr)

    def send(self, data: bytes, addr: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)


_open: list[Responder] = []


async def start_responder(script: Callable[[Responder, stun.Message, Address], None]) -> Responder:
    loop = asyncio.get_running_loop()
    _, responder = await loop.create_datagram_endpoint(lambda: Responder(script), local_addr=("127.0.0.1", 0))
    _open.append(responder)
    return responder


@pytest.fixture(autouse=True)
async def close_responders() -> AsyncIterator[None]:
    yield
    while _open:
        transport = _open.pop().transport
        if transport is not None:
            transport.close()


@pytest.fixture
async def port() -> AsyncIterator[UdpPort]:
    async with await UdpPort.bind(Endpoint("127.0.0.1", 0)) as bound:
        yield bound


@pytest.fixture
async def client(port: UdpPort) -> AsyncIterator[StunClient]:
    async with StunClient(port, rto=RTO, timeout=TIMEOUT) as stun_client:
        yield stun_client


def test_schedule_follows_rfc5389() -> None:
    assert list(retransmission_schedule(0.5, 1000)) == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Rc = 7
    # the doubling is capped so that all Rc requests fit into a short deadline (lossy paths)
    assert list(retransmission_schedule(0.1, 3.0)) == pytest.approx([0, 0.1, 0.3, 0.7, 1.1286, 1.5571, 1.9857],
                                                                    abs=1e-3)
    assert list(retransmission_schedule(0.1, 0.5)) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert list(retransmission_schedule(0.1, 0)) == [0]  # the first request always goes


async def test_answer_gives_mapped_and_other(client: StunClient) -> None:
    responder = await start_responder(lambda r, req, addr: r.send(
        success(req, ("198.18.11.2", 40001), **{"OTHER-ADDRESS": ("127.0.0.2", 3479)}), addr))
    binding = await client.binding(responder.address)
    assert binding.mapped == ("198.18.11.2", 40001)
    assert binding.other == ("127.0.0.2", 3479)
    assert binding.source == responder.address
    assert binding.sends == 1


async def test_retransmits_the_same_transaction_id(client: StunClient) -> None:
    def third_time(r: Responder, req: stun.Message, addr: Address) -> None:
        if len(r.requests) == 3:
            r.send(success(req, addr), addr)

    responder = await start_responder(third_time)
    binding = await client.binding(responder.address)
    assert binding.sends == 3
    assert len({request.transaction_id for request in responder.requests}) == 1


async def test_late_reply_to_first_send_counts(port: UdpPort) -> None:
    loop = asyncio.get_running_loop()
    rto = 0.1  # wide margins: the reply lands between the second send (0.1 s) and the third (0.3 s)

    def late_once(r: Responder, req: stun.Message, addr: Address) -> None:
        if len(r.requests) == 1:  # answer only the first request, after the client has retransmitted
            loop.call_later(rto * 1.5, r.send, success(req, addr), addr)

    responder = await start_responder(late_once)
    async with StunClient(port, rto=rto, timeout=1.0) as client:
        binding = await client.binding(responder.address)
    assert binding.sends == 2
    assert binding.rtt >= rto * 1.5


async def test_foreign_transaction_id_is_left_to_other_listeners(port: UdpPort, client: StunClient) -> None:
    others: list[bytes] = []
    port.add_listener(lambda data, addr: others.append(data) is None)

    def foreign(r: Responder, req: stun.Message, addr: Address) -> None:
        r.send(success(stun.Message(stun.Method.BINDING, stun.Class.REQUEST), addr), addr)

    responder = await start_responder(foreign)
    with pytest.raises(NatError, match="no answer from STUN server"):
        await client.binding(responder.address, deadline=0.1)
    assert others and all(message.transaction_id_of(data) != responder.requests[0].transaction_id
                          for data in others)
    assert client.ignored == 0


async def test_punch_packets_pass_through_during_a_transaction(port: UdpPort, client: StunClient) -> None:
    punch: list[bytes] = []
    port.add_listener(lambda data, addr: punch.append(data) is None)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def answer_after_punch(r: Responder, req: stun.Message, addr: Address) -> None:
        stranger.sendto(b"PLXS punch packet", addr)
        r.send(success(req, addr), addr)

    responder = await start_responder(answer_after_punch)
    with stranger:
        await client.binding(responder.address)
        await asyncio.sleep(0.01)
    assert punch == [b"PLXS punch packet"]


async def test_reply_from_unexpected_source_is_ignored(client: StunClient) -> None:
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))

    def spoof_then_answer(r: Responder, req: stun.Message, addr: Address) -> None:
        stranger.sendto(success(req, ("6.6.6.6", 666)), addr)  # right id, wrong sender
        if len(r.requests) == 2:
            r.send(success(req, addr), addr)

    responder = await start_responder(spoof_then_answer)
    with stranger:
        binding = await client.binding(responder.address)
    assert binding.mapped != ("6.6.6.6", 666)
    assert client.ignored >= 1


async def test_change_request_accepts_only_the_alternate(client: StunClient) -> None:
    alternate = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    alternate.bind(("127.0.0.1", 0))

    def from_alternate(r: Responder, req: stun.Message, addr: Address) -> None:
        assert req.attributes["CHANGE-REQUEST"] == message.CHANGE_IP | message.CHANGE_PORT
        alternate.sendto(success(req, addr), addr)

    responder = await start_responder(from_alternate)
    with alternate:
        other = alternate.getsockname()
        binding = await client.binding(responder.address, change_ip=True, change_port=True, reply_from=other)
        assert binding.source == other
        # the same reply is not accepted when the server itself was expected
        assert await client.probe(responder.address, deadline=0.1) is None


async def test_error_response_is_a_clear_error(client: StunClient) -> None:
    def refuse(r: Responder, req: stun.Message, addr: Address) -> None:
        reply = stun.Message(stun.Method.BINDING, stun.Class.ERROR, req.transaction_id,
                             {"ERROR-CODE": (400, "Bad Request")})
        r.send(bytes(reply), addr)

    responder = await start_responder(refuse)
    with pytest.raises(NatError, match=r"refused the binding request: 400 Bad Request"):
        await client.binding(responder.address, label="stun.lab:3478")


def header(kind: int, length: int, transaction_id: bytes, cookie: int = message.COOKIE) -> bytes:
    return struct.pack("!HHI12s", kind, length, cookie, transaction_id)


def garbage_for(request: stun.Message) -> dict[str, bytes]:
    """Hand-made bad replies that carry the request's transaction id (so they reach the client)."""
    tid = request.transaction_id
    good = success(request, ("198.18.11.2", 40001))
    wrong_family = bytearray(good)
    wrong_family[20 + 4 + 1] = 3  # family byte of XOR-MAPPED-ADDRESS: neither 1 (IPv4) nor 2 (IPv6)
    return {
        "truncated header": good[:12],
        "truncated attribute": header(0x0101, 8, tid) + struct.pack("!HH", 0x0020, 8) + b"\x00\x01\x12\x34",
        "length mismatch": good + b"\x00\x00\x00\x00",
        "wrong family": bytes(wrong_family),
        "IPv4 family with IPv6 length": header(0x0101, 24, tid) + struct.pack("!HHBB", 0x0020, 20, 0, 1)
        + bytes(18),
        "wrong magic cookie": header(0x0101, 0, tid, cookie=0xDEADBEEF),
        "no mapped address": header(0x0101, 0, tid),
        "unknown method": header(0x0F01, 0, tid),
        "an indication": header(0x0011, 0, tid),
        "bad utf-8 error reason": header(0x0111, 12, tid) + struct.pack("!HH", 0x0009, 8) + b"\x00\x00\x04\x00"
        + b"\xff\xfe\xfd\xfc",
        "random bytes": os.urandom(64),
    }


@pytest.mark.parametrize("kind", list(garbage_for(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))))
async def test_garbage_is_ignored_then_a_good_answer_wins(client: StunClient, kind: str) -> None:
    def garbage_then_answer(r: Responder, req: stun.Message, addr: Address) -> None:
        r.send(garbage_for(req)[kind], addr)
        if len(r.requests) == 2:
            r.send(success(req, ("198.18.11.2", 40001)), addr)

    responder = await start_responder(garbage_then_answer)
    binding = await client.binding(responder.address)
    assert binding.mapped == ("198.18.11.2", 40001)
    assert binding.sends >= 2  # the garbage answering the first send did not end the transaction


async def test_only_garbage_is_a_timeout_that_says_why(client: StunClient) -> None:
    responder = await start_responder(lambda r, req, addr: r.send(garbage_for(req)["wrong family"], addr))
    with pytest.raises(NatError, match=r"ignored replies: .*unknown protocol"):
        await client.binding(responder.address, deadline=0.1)


async def test_silence_respects_the_deadline(client: StunClient) -> None:
    responder = await start_responder(lambda r, req, addr: None)
    started = time.monotonic()
    with pytest.raises(NatError, match=r"no answer from STUN server 127\.0\.0\.1:\d+ within 0\.5 s \(7 requests\)"):
        await client.binding(responder.address)
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.2
    assert len(responder.requests) == 7  # 0, 1, 3 RTO, then every TIMEOUT / 7: all Rc requests in the deadline


async def test_hairpin_sees_its_own_request(port: UdpPort, client: StunClient) -> None:
    assert await client.loops_back(port.local, deadline=0.2) is True
    silent = await start_responder(lambda r, req, addr: None)
    assert await client.loops_back(silent.address, deadline=0.1) is False


async def test_close_removes_the_listener(port: UdpPort) -> None:
    async with StunClient(port, rto=RTO, timeout=TIMEOUT):
        assert len(port._listeners) == 1
    assert port._listeners == []
