"""STUN Binding messages (RFC 5389, RFC 5780 attributes) on top of aioice's codec.

aioice's ``parse_message`` is a good codec but trusts its input more than a socket open to the internet may:
it does not check the magic cookie or the two leading zero bits, and a truncated attribute raises
``struct.error`` (not ``ValueError``). ``decode`` checks the header itself and turns every failure into
``Malformed`` with a short reason, so a datagram can never crash the client.
"""

from __future__ import annotations

import ipaddress
import struct

from aioice import stun

Address = tuple[str, int]

COOKIE = stun.COOKIE
HEADER_LENGTH = stun.HEADER_LENGTH
CHANGE_IP = 0x04
CHANGE_PORT = 0x02
_COOKIE_BYTES = struct.pack("!I", COOKIE)


class Malformed(ValueError):
    """A datagram that is not a well-formed STUN message; the text says what is wrong."""


def binding_request(*, change_ip: bool = False, change_port: bool = False) -> stun.Message:
    """A Binding request with a fresh random transaction id; CHANGE-REQUEST only when a change is asked."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    if change_ip or change_port:
        request.attributes["CHANGE-REQUEST"] = (CHANGE_IP if change_ip else 0) | (CHANGE_PORT if change_port else 0)
    return request


def transaction_id_of(data: bytes) -> bytes | None:
    """The transaction id if ``data`` has a plausible STUN header (cheap; no parsing), else None.

    Used to decide whether a datagram on a shared port is STUN at all before looking further.
    """
    if len(data) < HEADER_LENGTH or data[0] & 0xC0 or data[4:8] != _COOKIE_BYTES:
        return None
    return data[8:20]


def decode(data: bytes) -> stun.Message:
    """Parse one STUN message; ``Malformed`` (never anything else) when it is not one."""
    if len(data) < HEADER_LENGTH:
        raise Malformed(f"truncated: {len(data)} bytes, a STUN header has 20")
    if data[0] & 0xC0:
        raise Malformed("not STUN: the two leading bits are not zero")
    if data[4:8] != _COOKIE_BYTES:
        raise Malformed(f"wrong magic cookie 0x{data[4:8].hex()}")
    (length,) = struct.unpack("!H", data[2:4])
    if length % 4:
        raise Malformed(f"message length {length} is not a multiple of 4")
    if len(data) != HEADER_LENGTH + length:
        raise Malformed(f"length field says {length} bytes of attributes, datagram has {len(data) - 20}")
    try:
        return stun.parse_message(data)
    except (ValueError, struct.error, IndexError) as error:  # UnicodeDecodeError is a ValueError
        raise Malformed(str(error) or type(error).__name__) from error


def normalize(address: Address) -> Address:
    """The canonical text of an IP address (so ``::ffff:1.2.3.4`` and ``1.2.3.4`` compare equal)."""
    host, port = address
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return (host, port)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (str(ip), port)


def mapped_address(message: stun.Message) -> Address:
    """Our endpoint as the server saw it: XOR-MAPPED-ADDRESS, else the RFC 3489 MAPPED-ADDRESS."""
    value = message.attributes.get("XOR-MAPPED-ADDRESS") or message.attributes.get("MAPPED-ADDRESS")
    if value is None:
        raise Malformed("binding response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS")
    return normalize((value[0], value[1]))


def other_address(message: stun.Message) -> Address | None:
    """The server's alternate endpoint: OTHER-ADDRESS, else the RFC 3489 CHANGED-ADDRESS; None if absent."""
    value = message.attributes.get("OTHER-ADDRESS") or message.attributes.get("CHANGED-ADDRESS")
    return None if value is None else normalize((value[0], value[1]))


def response_origin(message: stun.Message) -> Address | None:
    value = message.attributes.get("RESPONSE-ORIGIN") or message.attributes.get("SOURCE-ADDRESS")
    return None if value is None else normalize((value[0], value[1]))


def error_text(message: stun.Message) -> str:
    """``"400 Bad Request"`` from ERROR-CODE, or a note that the server gave none."""
    value = message.attributes.get("ERROR-CODE")
    if value is None:
        return "an error response without ERROR-CODE"
    code, reason = value
    return f"{code} {reason}".strip()
