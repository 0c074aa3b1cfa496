"""The server half of SOCKS5 (RFC 1928) that ``-D`` needs: no authentication, CONNECT only, IPv4, domain name
and IPv6 address types. The target travels to the peer as a ``-L`` target would; the peer's ``expose`` decides.
"""

from __future__ import annotations

import asyncio
import ipaddress

from plexus.forward.spec import Target
from plexus.forward.wire import CONNECTION_REFUSED, REFUSED, UNREACHABLE

VERSION = 5
NO_AUTH, NO_METHOD = 0x00, 0xFF
CONNECT = 0x01
IPV4, DOMAIN, IPV6 = 0x01, 0x03, 0x04
SUCCEEDED, FAILURE, NOT_ALLOWED, HOST_UNREACHABLE, CONN_REFUSED = 0x00, 0x01, 0x02, 0x04, 0x05
COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 0x07, 0x08

REPLY_FOR = {REFUSED: NOT_ALLOWED, UNREACHABLE: HOST_UNREACHABLE, CONNECTION_REFUSED: CONN_REFUSED}


class SocksError(Exception):
    """The client's request cannot be served; ``reply`` is the code to answer with (None: close at once)."""

    def __init__(self, reason: str, reply: int | None = None) -> None:
        super().__init__(reason)
        self.reply = reply


async def negotiate(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Target:
    """Read the greeting and the CONNECT request; return the target (the reply is the caller's, see ``reply``)."""
    version, count = await reader.readexactly(2)
    if version != VERSION:
        raise SocksError(f"not SOCKS5 (version {version})")
    methods = await reader.readexactly(count)
    if NO_AUTH not in methods:
        writer.write(bytes([VERSION, NO_METHOD]))
        raise SocksError("the client offers no method without authentication")
    writer.write(bytes([VERSION, NO_AUTH]))
    version, command, _, kind = await reader.readexactly(4)
    if version != VERSION:
        raise SocksError(f"request of version {version}", FAILURE)
    if kind == IPV4:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == IPV6:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif kind == DOMAIN:
        size = (await reader.readexactly(1))[0]
        try:
            host = (await reader.readexactly(size)).decode("ascii")
        except UnicodeDecodeError:
            raise SocksError("the domain name is not ASCII", FAILURE) from None
    else:
        raise SocksError(f"address type {kind}", ADDRESS_NOT_SUPPORTED)
    port = int.from_bytes(await reader.readexactly(2), "big")
    if command != CONNECT:
        raise SocksError(f"command {command} (only CONNECT)", COMMAND_NOT_SUPPORTED)
    if not host or port == 0:
        raise SocksError("an empty host or port 0", FAILURE)
    return Target(host, port)


def reply(writer: asyncio.StreamWriter, code: int) -> None:
    """The answer to CONNECT. The bound address is not ours to tell (it is on the peer): 0.0.0.0:0."""
    writer.write(bytes([VERSION, code, 0, IPV4]) + bytes(6))
