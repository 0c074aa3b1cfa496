"""The offer document: one small, versioned JSON object per invite / accept / refuse.

Carrier-independent (the email and the DHT transports carry the same bytes). ``encode`` gives canonical bytes
(sorted keys, no spaces, ASCII) so that an HMAC over them is stable; ``decode`` is strict: size limit, exact
types, no unknown or duplicate keys, and every failure is an ``OfferError`` with a one-line reason.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from plexus.errors import one_line

VERSION = 1
MAX_OFFER_BYTES = 64 * 1024
NONCE_BYTES = 32
KEY_BYTES = 32
MAX_ID = 128
MAX_EXPORTS = 32
MAX_EXPORT_VALUE = 4096
MAX_REASON = 500

Kind = Literal["invite", "accept", "refuse"]
KINDS: tuple[Kind, ...] = ("invite", "accept", "refuse")
# invite: "relayed" = the relay is required (policy always, or the direct punch failed), "direct" = never relay;
# accept: the path the acceptor chose. Absent: no preference (invite), direct (accept).
PATHS = ("direct", "probed", "relayed")


class OfferError(ValueError):
    """A document that is not a valid offer (the message says why, in one line)."""


@dataclass(frozen=True)
class Offer:
    kind: Kind
    sender: str  # "from": the sender's host id
    recipient: str  # "to": the recipient's host id
    nonce: bytes  # 32 random bytes, unique per offer (replay detection, key derivation)
    time: float  # unix time of creation
    endpoint: tuple[str, int] | None = None  # sender's public endpoint (invite, accept)
    nat: str | None = None  # sender's NAT mapping behaviour (invite, accept)
    key: bytes | None = None  # sender's ephemeral X25519 public key (invite, accept)
    exports: dict[str, str] = field(default_factory=dict)  # the payload's public values
    reply_to: bytes | None = None  # nonce of the invite being answered (accept; refuse as an answer)
    reason: str | None = None  # why (refuse)
    filtering: str | None = None  # sender's NAT filtering behaviour, when it measured it (invite, accept)
    relay: tuple[str, int] | None = None  # sender's TURN relayed address: the peer sends there (invite, accept)
    path: str | None = None  # see PATHS

    @staticmethod
    def new_nonce() -> bytes:
        return secrets.token_bytes(NONCE_BYTES)

    def encode(self) -> bytes:
        document: dict[str, Any] = {
            "plexus": VERSION, "kind": self.kind, "from": self.sender, "to": self.recipient,
            "nonce": _b64(self.nonce), "time": self.time,
        }
        if self.endpoint is not None:
            document["endpoint"] = [self.endpoint[0], self.endpoint[1]]
        if self.nat is not None:
            document["nat"] = self.nat
        if self.filtering is not None:
            document["filtering"] = self.filtering
        if self.relay is not None:
            document["relay"] = [self.relay[0], self.relay[1]]
        if self.path is not None:
            document["path"] = self.path
        if self.key is not None:
            document["key"] = _b64(self.key)
        if self.exports:
            document["exports"] = dict(self.exports)
        if self.reply_to is not None:
            document["reply_to"] = _b64(self.reply_to)
        if self.reason is not None:
            document["reason"] = self.reason
        data = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        if len(data) > MAX_OFFER_BYTES:
            raise OfferError(f"offer is {len(data)} bytes, more than {MAX_OFFER_BYTES}")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Offer:
        if len(data) > MAX_OFFER_BYTES:
            raise OfferError(f"offer is {len(data)} bytes, more than {MAX_OFFER_BYTES}")
        try:
            document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                                  parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise OfferError(f"not JSON: {one_line(error)}") from error
        if not isinstance(document, dict):
            raise OfferError("not a JSON object")
        return cls._from_document(document)

    @classmethod
    def _from_document(cls, document: dict[str, Any]) -> Offer:
        if document.get("plexus") != VERSION or type(document.get("plexus")) is not int:
            raise OfferError(f"unsupported version {document.get('plexus')!r} (this plexus speaks {VERSION})")
        allowed = {"plexus", "kind", "from", "to", "nonce", "time", "endpoint", "nat", "filtering", "relay", "path",
                   "key", "exports", "reply_to", "reason"}
        unknown = sorted(set(document) - allowed)
        if unknown:
            raise OfferError(f"unknown field {unknown[0]!r}")
        kind = document.get("kind")
        if kind not in KINDS:
            raise OfferError(f"kind must be one of {', '.join(KINDS)}")
        offer = cls(
            kind=kind,
            sender=_identifier(document, "from"),
            recipient=_identifier(document, "to"),
            nonce=_bytes_field(document, "nonce", NONCE_BYTES, required=True),  # type: ignore[arg-type]
            time=_time(document),
            endpoint=_endpoint(document, "endpoint"),
            nat=_text(document, "nat", 64),
            filtering=_text(document, "filtering", 64),
            relay=_endpoint(document, "relay"),
            path=_text(document, "path", 16),
            key=_bytes_field(document, "key", KEY_BYTES),
            exports=_exports(document),
            reply_to=_bytes_field(document, "reply_to", NONCE_BYTES),
            reason=_text(document, "reason", MAX_REASON),
        )
        offer._check_kind_fields()
        return offer

    def _check_kind_fields(self) -> None:
        if self.kind in ("invite", "accept"):
            for name, value in (("endpoint", self.endpoint), ("nat", self.nat), ("key", self.key)):
                if value is None:
                    raise OfferError(f"{self.kind} without {name}")
        if self.kind == "accept" and self.reply_to is None:
            raise OfferError("accept without reply_to")
        if self.kind == "invite" and self.reply_to is not None:
            raise OfferError("invite with reply_to")
        if self.kind == "refuse" and self.reason is None:
            raise OfferError("refuse without reason")
        if self.path is not None and self.path not in PATHS:
            raise OfferError(f"'path' must be one of {', '.join(PATHS)}")
        if self.kind == "refuse" and (self.relay is not None or self.path is not None):
            raise OfferError("refuse with relay or path")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _identifier(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID or not value.isprintable():
        raise OfferError(f"{name!r} must be a printable id of 1..{MAX_ID} characters")
    return value


def _text(document: dict[str, Any], name: str, limit: int) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit or not value.isprintable():
        raise OfferError(f"{name!r} must be printable text of at most {limit} characters")
    return value


def _bytes_field(document: dict[str, Any], name: str, size: int, required: bool = False) -> bytes | None:
    value = document.get(name)
    if value is None:
        if required:
            raise OfferError(f"{name!r} is missing")
        return None
    if not isinstance(value, str):
        raise OfferError(f"{name!r} must be base64 text")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise OfferError(f"{name!r} is not valid base64") from None
    if len(decoded) != size:
        raise OfferError(f"{name!r} must be {size} bytes, not {len(decoded)}")
    return decoded


def _time(document: dict[str, Any]) -> float:
    value = document.get("time")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise OfferError("'time' must be a unix time (number)")
    return float(value)


def _endpoint(document: dict[str, Any], name: str) -> tuple[str, int] | None:
    value = document.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or type(value[1]) is not int or not 0 < value[1] <= 65535):
        raise OfferError(f"{name!r} must be [ip, port]")
    try:
        address = ipaddress.ip_address(value[0])
    except ValueError:
        raise OfferError(f"{name!r} address {value[0][:60]!r} is not an IP address") from None
    return (str(address), value[1])


def _exports(document: dict[str, Any]) -> dict[str, str]:
    value = document.get("exports")
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_EXPORTS:
        raise OfferError(f"'exports' must be an object of at most {MAX_EXPORTS} text values")
    for key, item in value.items():
        if not isinstance(item, str) or not 0 < len(key) <= 64 or len(item) > MAX_EXPORT_VALUE:
            raise OfferError(f"'exports' entry {key[:40]!r} must be text of at most {MAX_EXPORT_VALUE} characters")
    return dict(value)

