"""Handshake packets: a small authenticated header, nothing else.

    magic "PLXP" | version 1 | flags 1 | session id 8 | counter 4 | tag 16      = 34 bytes

The tag is HMAC-SHA256 (truncated to 16 bytes) over everything before it, keyed with a key derived from the
session secret. Flags carry the packet kind and which role sent it, so that our own packets reflected back to us
(hairpinning NATs) are never taken for the peer's. Opening packets (TTL-limited, sent before the secret exists)
carry no tag and are never accepted as a handshake packet.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"PLXP"
VERSION = 1
_HEADER = struct.Struct("!4sBB8sI")
TAG_LENGTH = 16
PACKET_LENGTH = _HEADER.size + TAG_LENGTH
FROM_ACCEPTOR = 0x80


class Kind(enum.IntEnum):
    OPEN = 0x01  # TTL-limited opening packet, unauthenticated, ignored by the receiver
    HELLO = 0x02  # "here I am"
    ACK = 0x03  # "I have received a valid packet from you"
    DONE = 0x04  # acceptor: "I have your ACK: my side is complete"; initiator: "I have your DONE"


@dataclass(frozen=True)
class Packet:
    kind: Kind
    from_acceptor: bool
    session_id: bytes
    counter: int


def punch_key(secret: bytes) -> bytes:
    """The handshake key: never the session secret itself, so the payload key and this one stay independent."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"plexus punch key").derive(secret)


def _tag(key: bytes, header: bytes) -> bytes:
    return hmac.new(key, header, hashlib.sha256).digest()[:TAG_LENGTH]


def encode(packet: Packet, key: bytes) -> bytes:
    flags = int(packet.kind) | (FROM_ACCEPTOR if packet.from_acceptor else 0)
    header = _HEADER.pack(MAGIC, VERSION, flags, packet.session_id, packet.counter)
    return header + _tag(key, header)


def opening(session_hint: bytes, from_acceptor: bool = True) -> bytes:
    """An opening packet: only its IP header matters (it opens our NAT and dies on the way)."""
    flags = int(Kind.OPEN) | (FROM_ACCEPTOR if from_acceptor else 0)
    return _HEADER.pack(MAGIC, VERSION, flags, session_hint[:8].ljust(8, b"\0"), 0) + bytes(TAG_LENGTH)


def is_plexus(data: bytes) -> bool:
    return data[:4] == MAGIC


class BadPacket(Exception):
    """Not a valid handshake packet of this session (the reason is for counters and debug logs only)."""


def decode(data: bytes, key: bytes, session_id: bytes) -> Packet:
    """Parse and authenticate one datagram; BadPacket if it is not a valid packet of this session."""
    if len(data) != PACKET_LENGTH:
        raise BadPacket("length")
    magic, version, flags, sid, counter = _HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise BadPacket("magic")
    kind_value = flags & ~FROM_ACCEPTOR
    if kind_value == Kind.OPEN:
        raise BadPacket("opening")
    if kind_value not in (Kind.HELLO, Kind.ACK, Kind.DONE):
        raise BadPacket("kind")
    if not hmac.compare_digest(_tag(key, data[: _HEADER.size]), data[_HEADER.size:]):
        raise BadPacket("tag")
    if sid != session_id:  # checked after the tag: a forged packet never learns what was wrong
        raise BadPacket("session")
    return Packet(Kind(kind_value), bool(flags & FROM_ACCEPTOR), sid, counter)
