"""The codec wrapper and the pure classification logic: decode() turns any bytes into a Message or Malformed."""

from __future__ import annotations

import contextlib

import pytest
from aioice import stun
from hypothesis import given, settings
from hypothesis import strategies as st

from plexus.nat import message, punchable
from plexus.nat.behaviour import quiet_wait
from plexus.nat.client import Binding
from plexus.nat.mapping import _mapping_from_two_servers
from plexus.profile.model import Endpoint, Stun


def response() -> bytes:
    request = message.binding_request()
    reply = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, request.transaction_id, {
        "XOR-MAPPED-ADDRESS": ("198.18.11.2", 40001), "MAPPED-ADDRESS": ("198.18.11.2", 40001),
        "OTHER-ADDRESS": ("198.18.0.11", 3479), "RESPONSE-ORIGIN": ("198.18.0.10", 3478),
        "SOFTWARE": "coturn"})
    return bytes(reply)


def test_request_wire_format() -> None:
    request = message.binding_request(change_ip=True, change_port=True)
    data = bytes(request)
    assert data[:2] == b"\x00\x01" and data[4:8] == b"\x21\x12\xa4\x42"
    assert data[20:] == b"\x00\x03\x00\x04\x00\x00\x00\x06"
    assert bytes(message.binding_request(change_port=True))[-1] == 0x02
    assert len(bytes(message.binding_request())) == 20  # no CHANGE-REQUEST when nothing is to change


def test_decode_reads_rfc5780_attributes() -> None:
    parsed = message.decode(response())
    assert message.mapped_address(parsed) == ("198.18.11.2", 40001)
    assert message.other_address(parsed) == ("198.18.0.11", 3479)
    assert message.response_origin(parsed) == ("198.18.0.10", 3478)


def test_wrong_cookie_is_rejected_although_aioice_accepts_it() -> None:
    data = bytearray(response())
    data[4:8] = b"\x00\x00\x00\x00"
    with pytest.raises(message.Malformed, match="magic cookie"):
        message.decode(bytes(data))
    assert message.transaction_id_of(bytes(data)) is None


def test_ipv4_mapped_ipv6_is_normalized() -> None:
    assert message.normalize(("::ffff:198.18.0.10", 3478)) == ("198.18.0.10", 3478)
    assert message.normalize(("fe80::1%eth0", 1)) == ("fe80::1", 1)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120))
def test_random_bytes_never_raise_anything_but_malformed(data: bytes) -> None:
    with contextlib.suppress(message.Malformed):
        message.decode(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_responses_never_raise_anything_but_malformed(data: st.DataObject) -> None:
    raw = bytearray(response())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parsed = message.decode(bytes(raw[:cut]))
        message.mapped_address(parsed)
        message.other_address(parsed)
    except message.Malformed:
        pass


def binding(server: tuple[str, int], mapped: tuple[str, int]) -> Binding:
    return Binding(server, mapped, server, None, None, 0.001, 1)


def test_two_servers_stand_in_for_other_address() -> None:
    first = (Endpoint("198.18.0.10", 3478), binding(("198.18.0.10", 3478), ("198.18.11.2", 5000)))
    same = (Endpoint("198.18.0.11", 3479), binding(("198.18.0.11", 3479), ("198.18.11.2", 5000)))
    new = (Endpoint("198.18.0.11", 3479), binding(("198.18.0.11", 3479), ("198.18.11.2", 6000)))
    assert _mapping_from_two_servers([first, same]) == "endpoint-independent"
    assert _mapping_from_two_servers([first, new]) == "address-and-port-dependent"
    assert _mapping_from_two_servers([first]) == "unknown"  # one ordinary server: try direct, do not refuse


def test_verdicts() -> None:
    assert punchable("endpoint-independent")[0] is True
    assert punchable("none")[0] is True
    ok, reason = punchable("unknown")
    assert ok is True and "tries a direct punch" in reason and "second server" in reason
    for mapping in ("address-dependent", "address-and-port-dependent"):
        ok, reason = punchable(mapping)  # type: ignore[arg-type]
        assert ok is False
        assert "new public port for every" in reason and "what would still work:" in reason
        assert "forwarded UDP port" in reason and "public address" in reason


def test_quiet_wait_is_bounded() -> None:
    stun = Stun(servers=(), timeout=1.0, rto=0.1)
    assert quiet_wait(stun, 0.0005) == pytest.approx(0.2)  # two RTOs: one retransmission
    assert quiet_wait(stun, 0.1) == pytest.approx(0.4)  # a slow path waits longer
    assert quiet_wait(stun, 5.0) == 1.0  # never past the profile's timeout
