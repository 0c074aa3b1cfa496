"""The forward protocol inside QUIC (ALPN ``plexus-forward/1``); sans-I/O, pinned by tests/data/forward_wire.json.

Every header is one frame: a 2-byte big-endian length (1..4096), then a canonical JSON object (sorted keys, no
spaces, ASCII).

- A **data stream** (one TCP connection) starts with ``{"connect": "host:port"}`` from the side that accepted the
  TCP connection; the other side answers ``{"ok": true}`` once its TCP connection to the target is up, and raw
  bytes follow both ways. The opener may send bytes right after its header; they wait for the target. A refusal
  is no header but a reset of both directions with an error code (``REFUSED``, ``CONNECTION_REFUSED``, ...); the reason
  stays in the refusing side's report.
- The **control stream** is the client's first bidirectional stream (id 0). Each side sends
  ``{"remote": [{"connect": "host:port", "listen": "host:port"}, ...]}`` first (its ``-R`` requests, maybe
  none), then answers each of the peer's requests with ``{"address": "host:port", "listening": "host:port"}`` or
  ``{"failed": "host:port", "reason": "..."}``. The end of the control stream ends the session.
"""

from __future__ import annotations

import json
from typing import Any

from plexus.forward.spec import RemoteForward, Target

ALPN = "plexus-forward/1"
MAX_HEADER = 4096
CONTROL_STREAM = 0

# Application error codes: stream resets / STOP_SENDING, and CONNECTION_CLOSE.
NO_ERROR = 0x0
REFUSED = 0x10  # the target is not in the exposing side's list
UNREACHABLE = 0x11  # the target cannot be reached (no route, no such name, timeout)
BAD_HEADER = 0x12  # the stream's header is malformed
TCP_RESET = 0x13  # a TCP side was reset, or failed
GOING_AWAY = 0x14  # the session is closing
CONNECTION_REFUSED = 0x15  # the target refused the TCP connection
UNVERIFIED = 0x20  # connection: the peer's certificate is missing or not the pinned one
PROTOCOL = 0x21  # connection: the control stream is broken

REASONS = {REFUSED: "refused: not exposed", UNREACHABLE: "target unreachable", BAD_HEADER: "bad header",
           TCP_RESET: "reset", GOING_AWAY: "session closing", CONNECTION_REFUSED: "target refused the connection"}


class WireError(ValueError):
    """A frame or message that does not follow the protocol."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if not 0 < len(body) <= MAX_HEADER:
        raise WireError(f"header of {len(body)} bytes (at most {MAX_HEADER})")
    return len(body).to_bytes(2, "big") + body


class FrameReader:
    """Collects stream bytes; ``next()`` returns each complete header, ``rest()`` the raw bytes after them."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next(self) -> dict[str, Any] | None:
        if len(self._buffer) < 2:
            return None
        size = int.from_bytes(self._buffer[:2], "big")
        if not 0 < size <= MAX_HEADER:
            raise WireError(f"header length {size} (1..{MAX_HEADER})")
        if len(self._buffer) < 2 + size:
            return None
        body = bytes(self._buffer[2:2 + size])
        del self._buffer[:2 + size]
        try:
            message = json.loads(body.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as error:
            raise WireError(f"header is not ASCII JSON: {error}") from None
        if not isinstance(message, dict):
            raise WireError("header is not a JSON object")
        return message

    def rest(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def _target(value: object, what: str, *, listen: bool = False) -> Target:
    if not isinstance(value, str):
        raise WireError(f"{what} is not a host:port text")
    try:
        return Target.parse(value, listen=listen)
    except ValueError as error:
        raise WireError(f"{what}: {error}") from None


def open_message(target: Target) -> dict[str, Any]:
    return {"connect": str(target)}


def parse_open(message: dict[str, Any]) -> Target:
    return _target(message.get("connect"), "connect")


OK: dict[str, Any] = {"ok": True}


def parse_reply(message: dict[str, Any]) -> None:
    if message.get("ok") is not True:
        raise WireError("reply is not ok")


def remote_message(remote: list[RemoteForward]) -> dict[str, Any]:
    return {"remote": [{"connect": str(r.target), "listen": str(r.bind)} for r in remote]}


def parse_remote(message: dict[str, Any]) -> list[RemoteForward]:
    requests = message.get("remote")
    if not isinstance(requests, list):
        raise WireError("the control stream does not start with the remote requests")
    forwards = []
    for request in requests:
        if not isinstance(request, dict):
            raise WireError("a remote request is not an object")
        bind = _target(request.get("listen"), "listen", listen=True)
        forwards.append(RemoteForward(bind, _target(request.get("connect"), "connect")))
    return forwards


def listening_message(request: RemoteForward, address: Target) -> dict[str, Any]:
    return {"address": str(address), "listening": str(request.bind)}


def failed_message(request: RemoteForward, reason: str) -> dict[str, Any]:
    return {"failed": str(request.bind), "reason": reason[:500]}
