"""One TURN allocation (RFC 8656) on aioice's TURN client, used like a ``UdpPort``: the handshake and then the
bridge send and listen through it.

- ``allocate`` logs in (long-term or REST credentials), tries the profile's servers in order, and gives a
  one-line ``RelayError`` for each way it can fail (no answer, credentials refused, quota);
- ``permit`` creates the permission for the peer's address with a ChannelBind (which installs the permission and
  a channel at once); data from any port of that IP is then let through, and a reply to a new port binds its
  own channel;
- aioice refreshes the allocation; plexus refreshes every channel (and with it its permission, which would
  expire after 300 s) every ``PERMISSION_REFRESH`` seconds, whether or not the payload sends;
- ``lost`` resolves with the reason when the allocation or a refresh fails; ``release`` deletes it on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import Sequence

from aioice import stun
from aioice.turn import TurnClientTcpProtocol, TurnClientUdpProtocol

from plexus.errors import RelayError
from plexus.profile.model import TurnServer
from plexus.relay.credentials import credentials_for
from plexus.udp import Address, ListenerPort

log = logging.getLogger("plexus.relay")

CONNECT_TIMEOUT = 5.0  # seconds for one server to grant an allocation (aioice alone would retry for ~30 s)
RELEASE_TIMEOUT = 2.0  # seconds to wait for the server to confirm the deletion; it expires on its own anyway
PERMISSION_REFRESH = 240.0  # permissions last 300 s, channels 600 s (RFC 8656 §9, §12); a ChannelBind refreshes both
FIRST_CHANNEL = 0x4000
_ERRORS = {401: "refused our credentials (401 Unauthorized)", 403: "forbids this allocation (403 Forbidden)",
           437: "does not know the allocation (437)", 441: "refused our credentials (441 Wrong Credentials)",
           486: "has reached its allocation quota for this user (486)",
           508: "has no capacity left (508 Insufficient Capacity)"}

TurnProtocol = TurnClientUdpProtocol | TurnClientTcpProtocol


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, allocation: Allocation) -> None:
        self._allocation = allocation

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._allocation._dispatch(data, (addr[0], addr[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        self._allocation._fail("the connection to the TURN server was lost or the allocation could not be "
                               "refreshed")


class Allocation(ListenerPort):
    """A granted allocation: ``relayed`` is the address the peer sends to, ``mapped`` our address as the TURN
    server sees it. Listeners and ``sendto`` work as on a ``UdpPort``."""

    def __init__(self, protocol: TurnProtocol, server: TurnServer, relayed: Address, mapped: Address) -> None:
        super().__init__()
        self.server, self.relayed, self.mapped = server, relayed, mapped
        self._protocol = protocol
        self._sends: set[asyncio.Task[None]] = set()
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._released = False
        protocol.receiver = _Receiver(self)
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_channels())

    def __repr__(self) -> str:
        return f"Allocation({self.server.url}, relayed {self.relayed[0]}:{self.relayed[1]})"

    @property
    def local(self) -> Address:
        name = self._protocol.transport.get_extra_info("sockname")
        return (name[0], name[1])

    @property
    def closed(self) -> bool:
        return self._released or self.lost.done()

    # --- the UdpPort face ------------------------------------------------------------------------------------
    def sendto(self, data: bytes, addr: Address, ttl: int | None = None) -> None:
        """Relay one datagram to ``addr``. TTL-limited opening packets are not sent: the permission, not a NAT
        of ours, lets the peer in, and the relay would deliver them at full TTL."""
        if ttl is not None or self.closed:
            return
        channel = self._protocol.peer_to_channel.get(addr)
        if channel is not None:  # the common case, without a task per datagram: ChannelData (RFC 8656 §12.4)
            self._protocol._send(struct.pack("!HH", channel, len(data)) + data)
            return
        task = asyncio.get_running_loop().create_task(self._protocol.send_data(data, addr))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("TURN send via %s failed: %s", self.server.url, task.exception())

    # --- permissions, refreshes, release ---------------------------------------------------------------------
    async def permit(self, peer: Address) -> None:
        """Let ``peer``'s IP send to the relayed address (a ChannelBind for ``peer``: permission and channel)."""
        protocol = self._protocol
        if peer in protocol.peer_to_channel:
            return
        channel = protocol.channel_number
        protocol.channel_number += 1
        try:
            await asyncio.wait_for(protocol.channel_bind(channel, peer), CONNECT_TIMEOUT)
        except (stun.TransactionError, TimeoutError, ConnectionError) as error:
            raise RelayError(f"TURN server {self.server.url} refused a permission for {peer[0]}: "
                             f"{_reason(error)}") from error
        protocol.channel_to_peer[channel] = peer
        protocol.peer_to_channel[peer] = channel
        protocol.channel_refresh_at[channel] = time.time() + PERMISSION_REFRESH

    async def _refresh_channels(self) -> None:
        while True:
            await asyncio.sleep(PERMISSION_REFRESH)
            for peer, channel in list(self._protocol.peer_to_channel.items()):
                try:
                    await asyncio.wait_for(self._protocol.channel_bind(channel, peer), CONNECT_TIMEOUT)
                except (stun.TransactionError, TimeoutError, ConnectionError) as error:
                    self._fail(f"the permission for {peer[0]} could not be refreshed: {_reason(error)}")
                    return
                self._protocol.channel_refresh_at[channel] = time.time() + PERMISSION_REFRESH

    def _fail(self, why: str) -> None:
        if not self.lost.done() and not self._released:
            log.warning("TURN allocation %s lost: %s", self.relayed, why)
            self.lost.set_result(why)

    async def release(self) -> None:
        """Delete the allocation (its permissions and channels go with it) and close the connection."""
        if self._released:
            return
        self._released = True
        self._refresher.cancel()
        for task in self._sends:
            task.cancel()
        with contextlib.suppress(Exception, TimeoutError):
            await asyncio.wait_for(self._protocol.delete(), RELEASE_TIMEOUT)
        self._protocol.transport.close()
        with contextlib.suppress(BaseException):
            await asyncio.gather(self._refresher, *self._sends, return_exceptions=True)


def _reason(error: BaseException) -> str:
    if isinstance(error, stun.TransactionFailed):
        code = error.response.error_code
        if code in _ERRORS:
            return _ERRORS[code]
        return f"error {code}" if code is not None else "an error without a code"
    if isinstance(error, stun.TransactionTimeout | TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    return str(error) or type(error).__name__


async def _connect(server: TurnServer, name: str, lifetime: int) -> Allocation:
    username, password = credentials_for(server, name)
    loop = asyncio.get_running_loop()
    address = (server.host, server.port)
    refresh = int(PERMISSION_REFRESH)
    protocol: TurnProtocol
    if server.transport == "udp":
        _, protocol = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(address, username, password, lifetime, refresh), remote_addr=address)
    else:
        context = None
        if server.transport == "tls":
            context = ssl.create_default_context(cafile=str(server.ca) if server.ca else None)
        _, protocol = await loop.create_connection(
            lambda: TurnClientTcpProtocol(address, username, password, lifetime, refresh), server.host, server.port,
            ssl=context)
    try:
        relayed = await asyncio.wait_for(protocol.connect(), CONNECT_TIMEOUT)
    except BaseException:
        if protocol.refresh_task is not None:
            protocol.refresh_task.cancel()
        protocol.transport.close()
        raise
    assert protocol.mapped_address is not None
    return Allocation(protocol, server, (relayed[0], relayed[1]),
                      (protocol.mapped_address[0], protocol.mapped_address[1]))


async def allocate(servers: Sequence[TurnServer], name: str, lifetime: float = 600.0) -> Allocation:
    """An allocation on the first of ``servers`` that grants one (``name``: the REST scheme's user name);
    RelayError naming each server's reason when none does."""
    if not servers:
        raise RelayError("no TURN server configured", hint="add relay.servers to the profile")
    reasons = []
    for server in servers:
        try:
            allocation = await _connect(server, name, int(lifetime))
        except (stun.TransactionError, TimeoutError, ConnectionError, OSError, ssl.SSLError) as error:
            reasons.append(f"{server.url} {_reason(error)}")
            continue
        log.info("TURN allocation %s:%d on %s", *allocation.relayed, server.url)
        return allocation
    credentials = any("credentials" in reason for reason in reasons)
    raise RelayError(f"no TURN allocation: {'; '.join(reasons)}",
                     hint="check relay.servers: username and password (or secret)" if credentials
                     else "is the TURN server running and reachable over UDP from here?")
