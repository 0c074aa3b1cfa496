"""The forward protocol's bytes (golden vectors in tests/data/forward_wire.json), its frame reader, and the
SOCKS5 request parser."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from plexus.forward import socks, wire
from plexus.forward.spec import RemoteForward, Target

DATA = Path(__file__).resolve().parents[1] / "data" / "forward_wire.json"
CHANGED = "forward wire format changed: that needs a new ALPN (plexus-forward/2) and new vectors"


def vectors() -> dict[str, Any]:
    return json.loads(DATA.read_text())


BUILT = {
    "open": wire.open_message(Target.parse("db.internal:5432")),
    "open-ipv6": wire.open_message(Target.parse("[::1]:22")),
    "ok": wire.OK,
    "remote": wire.remote_message([RemoteForward.parse("9000:127.0.0.1:8080"),
                                   RemoteForward.parse("[::1]:0:[fe80::1]:443")]),
    "remote-none": wire.remote_message([]),
    "listening": wire.listening_message(RemoteForward.parse("9000:127.0.0.1:8080"), Target("127.0.0.1", 9000)),
    "failed": wire.failed_message(RemoteForward.parse("0.0.0.0:9000:127.0.0.1:8080"),
                                  "0.0.0.0 is not a loopback address: -R listens on loopback only"),
}


def test_alpn_and_error_codes_are_pinned() -> None:
    stored = vectors()
    assert stored["alpn"] == wire.ALPN, CHANGED
    assert {name: getattr(wire, name) for name in stored["codes"]} == stored["codes"], CHANGED


@pytest.mark.parametrize("frame", vectors()["frames"], ids=lambda frame: frame["name"])
def test_golden_frames_encode_and_decode(frame: dict[str, Any]) -> None:
    assert BUILT[frame["name"]] == frame["message"], CHANGED
    assert wire.encode(frame["message"]).hex() == frame["hex"], CHANGED
    reader = wire.FrameReader()
    reader.feed(bytes.fromhex(frame["hex"]) + b"raw bytes after")
    assert reader.next() == frame["message"]
    assert reader.rest() == b"raw bytes after"


def test_decoded_messages_mean_what_was_built() -> None:
    assert wire.parse_open(BUILT["open-ipv6"]) == Target("::1", 22)
    assert wire.parse_remote(BUILT["remote"]) == [RemoteForward.parse("9000:127.0.0.1:8080"),
                                                  RemoteForward.parse("[::1]:0:[fe80::1]:443")]
    wire.parse_reply(BUILT["ok"])


def test_frames_arrive_in_pieces() -> None:
    data = wire.encode(BUILT["open"]) + wire.encode(BUILT["ok"])
    reader, messages = wire.FrameReader(), []
    for byte in data:
        reader.feed(bytes([byte]))
        while (message := reader.next()) is not None:
            messages.append(message)
    assert messages == [BUILT["open"], BUILT["ok"]]


@pytest.mark.parametrize(("data", "error"), [
    (b"\x00\x00", "header length 0"),
    (b"\x10\x01", "header length 4097"),
    (b"\x00\x02[]", "not a JSON object"),
    (b"\x00\x03{x}", "not ASCII JSON"),
    (b"\x00\x02\xff\xfe", "not ASCII JSON"),
])
def test_bad_frames_are_wire_errors(data: bytes, error: str) -> None:
    reader = wire.FrameReader()
    reader.feed(data)
    with pytest.raises(wire.WireError, match=error):
        reader.next()


@pytest.mark.parametrize(("message", "error"), [
    ({"connect": 5}, "connect is not a host:port text"),
    ({"connect": "host:0"}, "port '0' must be a number 1..65535"),
    ({}, "connect is not"),
])
def test_bad_open_headers(message: dict[str, Any], error: str) -> None:
    with pytest.raises(wire.WireError, match=error):
        wire.parse_open(message)


def test_bad_control_messages() -> None:
    with pytest.raises(wire.WireError, match="does not start with the remote requests"):
        wire.parse_remote({"listening": "x"})
    with pytest.raises(wire.WireError, match="listen"):
        wire.parse_remote({"remote": [{"listen": "nohost", "connect": "a:1"}]})
    with pytest.raises(wire.WireError, match="not ok"):
        wire.parse_reply({"ok": False})
    with pytest.raises(wire.WireError, match="at most 4096"):
        wire.encode({"reason": "x" * 5000})


class Sink:
    """Enough of a StreamWriter for the SOCKS parser: keeps what was written."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


async def negotiate(data: bytes) -> tuple[Target, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    sink = Sink()
    target = await socks.negotiate(reader, sink)  # type: ignore[arg-type]
    return target, sink.data


@pytest.mark.parametrize(("request_bytes", "target"), [
    (b"\x01\x7f\x00\x00\x01\x00\x16", Target("127.0.0.1", 22)),
    (b"\x03\x0bexample.org\x01\xbb", Target("example.org", 443)),
    (b"\x04" + bytes(15) + b"\x01\x00\x50", Target("::1", 80)),
])
async def test_socks_connect_requests_of_every_address_type(request_bytes: bytes, target: Target) -> None:
    assert await negotiate(b"\x05\x02\x02\x00" + b"\x05\x01\x00" + request_bytes) == (target, b"\x05\x00")


@pytest.mark.parametrize(("data", "reply", "error"), [
    (b"\x04\x01\x00", None, "not SOCKS5"),
    (b"\x05\x01\x02", None, "no method without authentication"),
    (b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x16", socks.COMMAND_NOT_SUPPORTED, "only CONNECT"),
    (b"\x05\x01\x00\x05\x01\x00\x09", socks.ADDRESS_NOT_SUPPORTED, "address type 9"),
    (b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x00", socks.FAILURE, "port 0"),
])
async def test_socks_requests_we_do_not_serve(data: bytes, reply: int | None, error: str) -> None:
    with pytest.raises(socks.SocksError, match=error) as failure:
        await negotiate(data)
    assert failure.value.reply == reply


async def test_a_truncated_socks_request_is_an_incomplete_read() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await negotiate(b"\x05\x01\x00\x05\x01\x00\x03\x10short")
