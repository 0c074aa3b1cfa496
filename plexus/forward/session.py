"""One forward session: the QUIC connection with the peer (``link``), our listeners, the control stream and one
stream per forwarded TCP connection.

``start()`` binds our listeners (or adopts them from a ``Listeners`` that outlives sessions) and the UDP port;
once the peer's certificate is verified the session announces its ``-R`` requests on the control stream and
attaches to the listeners. ``wait()`` returns only after our own ``close()``; the end of the connection for any
other reason (idle timeout, the peer closed or vanished, a fingerprint mismatch) raises LaunchError with the
reason, after every TCP connection of the session was reset or closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from plexus.errors import LaunchError, one_line
from plexus.forward import socks as socks5
from plexus.forward import wire
from plexus.forward.certs import Identity, check_fingerprint
from plexus.forward.link import Address, Link
from plexus.forward.listeners import Entry, Listeners, reset
from plexus.forward.pump import ForwardStats, Traffic, read_header, splice
from plexus.forward.spec import LocalForward, RemoteForward, Socks, Target
from plexus.forward.stream import Stream, StreamClosed
from plexus.forward.wire import FrameReader, WireError, encode

Report = Callable[[str, dict[str, Any]], None]
HEADER_TIMEOUT = 10.0  # for a stream's header, and a SOCKS client's request
CONNECT_TIMEOUT = 10.0  # for the TCP connection to a target
MAX_PING_INTERVAL = 15.0


def _ignore(kind: str, data: dict[str, Any]) -> None:
    pass


def loopback(host: str) -> bool:
    """Whether a ``-R`` bind host is one we listen on for the peer: loopback addresses and ``localhost`` only."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host.lower() == "localhost"


class ForwardSession:
    def __init__(self, *, bind: Address, peer: Address, client: bool, identity: Identity, peer_fingerprint: str,
                 local: Sequence[LocalForward] = (), remote: Sequence[RemoteForward] = (),
                 socks: Sequence[Socks] = (), expose: Sequence[Target] = (), report: Report = _ignore,
                 listeners: Listeners | None = None, idle_timeout: float = 30.0, ping_interval: float = 10.0) -> None:
        if not 0 < ping_interval <= MAX_PING_INTERVAL or ping_interval >= idle_timeout:
            raise LaunchError(f"forward: ping_interval {ping_interval:g}s must be in (0, {MAX_PING_INTERVAL:g}] "
                              f"and below idle_timeout ({idle_timeout:g}s)")
        try:
            self.pin = check_fingerprint(peer_fingerprint)
        except ValueError as error:
            raise LaunchError(f"forward: the peer's fingerprint: {error}") from None
        self.bind, self.peer, self.client, self.report = bind, peer, client, report
        self.local, self.remote, self.socks = list(local), list(remote), list(socks)
        entries = [Entry("L", f.bind, f.target, str(f)) for f in self.local] + \
                  [Entry("D", s.bind, None, str(s)) for s in self.socks]
        binds = [entry.bind for entry in entries]
        if len(set(binds)) < len(binds):
            raise LaunchError("forward: two forwards listen on the same address")
        self._entries = entries
        # A -R names a target of ours: asking for it exposes it.
        self._allowed = {t.key() for t in expose} | {r.target.key() for r in self.remote}
        self.listeners = listeners if listeners is not None else Listeners()
        self._own_listeners = listeners is None
        self.link = Link(peer=peer, client=client, identity=identity, pin=self.pin, idle_timeout=idle_timeout,
                         ping_interval=ping_interval, on_ready=self._ready, on_stream=self._stream)
        self.address: Address | None = None  # our UDP address, once bound
        self.remote_addresses: dict[RemoteForward, Target] = {}  # where the peer listens for our -R
        self._served: dict[Target, RemoteForward] = {}  # the peer's -R requests we listen for
        self._stats: dict[str, ForwardStats] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._closed_by_us = False
        self._finished: asyncio.Task[None] | None = None
        self.link.ended.add_done_callback(self._ended)

    # lifecycle

    async def start(self) -> Address:
        """Bind (or adopt) the listeners and the UDP port, and start the QUIC handshake; our UDP address."""
        try:
            for entry in self._entries:
                address, new = await self.listeners.listen(entry)
                self.report("listening", {"forward": entry.label, "address": str(address), "adopted": not new})
            self.address = await self.link.bind(self.bind)
        except LaunchError:
            if self._own_listeners:
                await self.listeners.close()
            raise
        self.link.start()
        return self.address

    async def wait(self) -> None:
        """Until the session ends; LaunchError with the reason unless we closed it."""
        reason = await asyncio.shield(self.link.ended)
        while self._finished is None:  # _ended runs as the future's first callback; be sure of it
            await asyncio.sleep(0)
        await asyncio.shield(self._finished)
        if not self._closed_by_us:
            raise LaunchError(f"forward session with {self.peer[0]}:{self.peer[1]} ended: {reason}")

    async def close(self) -> None:
        self._closed_by_us = True
        self.link.close(wire.NO_ERROR, "closed")
        await self.wait()

    def stats(self) -> dict[str, ForwardStats]:
        """Per forward (as reports name it): connections open and in total, refusals, bytes in and out."""
        return dict(self._stats)

    @property
    def strangers(self) -> int:
        """Datagrams from addresses other than the peer's, dropped."""
        return self.link.strangers

    def _ended(self, ended: asyncio.Future[str]) -> None:
        self._finished = asyncio.ensure_future(self._shutdown(ended.result()))

    async def _shutdown(self, reason: str) -> None:
        self.listeners.detach(self)
        for task in list(self._tasks):
            task.cancel()  # the link reset every stream; this ends what waits for a target or a SOCKS client
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_listeners:
            await self.listeners.close()
        if self.link.conn is not None and self.link.conn.shown is not None:
            self.report("fingerprint-mismatch", {"expected": self.pin, "got": self.link.conn.shown})
        self.report("closed", {"reason": reason, "by_us": self._closed_by_us, "strangers": self.link.strangers})

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stat(self, label: str) -> ForwardStats:
        return self._stats.setdefault(label, ForwardStats())

    # the connection

    def _ready(self) -> None:
        self.report("connected", {"peer": f"{self.peer[0]}:{self.peer[1]}", "fingerprint": self.pin,
                                  "role": "client" if self.client else "server"})
        if self.client:
            stream = self.link.open_stream(encode(wire.remote_message(self.remote)))
            assert stream.id == wire.CONTROL_STREAM
            self._spawn(self._control(stream))
        self.listeners.attach(self)

    def _stream(self, stream: Stream) -> None:
        if not self.client and stream.id == wire.CONTROL_STREAM:
            self._spawn(self._control(stream, announce=True))
        else:
            self._spawn(self._inbound(stream))

    async def _control(self, stream: Stream, *, announce: bool = False) -> None:
        """Announce our -R requests (the client did so when opening), serve the peer's, hear the answers."""
        frames, first = FrameReader(), True
        try:
            if announce:
                await stream.write(encode(wire.remote_message(self.remote)))
            while data := await stream.read():
                stream.consumed(len(data))
                frames.feed(data)
                while (message := frames.next()) is not None:
                    if first:
                        first = False
                        for request in wire.parse_remote(message):
                            await stream.write(encode(await self._serve(request)))
                    else:
                        self._answer(message)
            reason = "the peer ended the control stream"
        except (StreamClosed, WireError) as error:
            reason = f"control stream: {error}"
        self.link.close(wire.PROTOCOL, reason)  # nothing if the connection is over already

    async def _serve(self, request: RemoteForward) -> dict[str, Any]:
        label = f"peer {request}"
        if not loopback(request.bind.host):
            reason = f"{request.bind.host} is not a loopback address: -R listens on loopback only"
        else:
            try:
                address, new = await self.listeners.listen(Entry("R", request.bind, request.target, label))
            except LaunchError as error:
                reason = error.message
            else:
                self._served[request.bind] = request
                self.report("serving", {"forward": label, "address": str(address), "adopted": not new})
                return wire.listening_message(request, address)
        self.report("serve-failed", {"forward": label, "reason": reason})
        return wire.failed_message(request, reason)

    def _answer(self, message: dict[str, Any]) -> None:
        bind = message.get("listening", message.get("failed"))
        request = next((r for r in self.remote if str(r.bind) == bind), None)
        if request is None:
            raise WireError(f"an answer to no request of ours: {one_line(message)[:200]}")
        if "listening" in message:
            address = Target.parse(str(message.get("address")), listen=True)
            self.remote_addresses[request] = address
            self.report("remote-listening", {"forward": str(request), "address": str(address)})
        else:
            self.report("remote-failed", {"forward": str(request), "reason": str(message.get("reason"))[:500]})

    # TCP connections: ours toward the peer (handle), the peer's toward our targets (_inbound)

    async def handle(self, entry: Entry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection accepted on one of the listeners (``plexus.forward.listeners.Dispatcher``)."""
        if not self.link.ready or self.link.ended.done() or (entry.kind == "R" and entry.bind not in self._served):
            reset(writer)  # e.g. an -R listener a previous session's peer asked for, and this one did not
            return
        work = asyncio.ensure_future(self._accepted(entry, reader, writer))
        self._tasks.add(work)
        work.add_done_callback(self._tasks.discard)
        # The session cancels ``work`` when it ends; the listener's own task must not end cancelled (asyncio
        # logs that as an error).
        with contextlib.suppress(asyncio.CancelledError):
            await work

    async def _accepted(self, entry: Entry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if entry.kind == "D":
                target = await self._socks(entry, reader, writer)
                if target is not None:
                    await self._outbound(entry.label, target, reader, writer, socks=True)
            else:
                assert entry.target is not None
                await self._outbound(entry.label, entry.target, reader, writer)
        finally:
            if not writer.is_closing():
                reset(writer)  # cancelled while a SOCKS client was still talking

    async def _socks(self, entry: Entry, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> Target | None:
        try:
            return await asyncio.wait_for(socks5.negotiate(reader, writer), HEADER_TIMEOUT)
        except (socks5.SocksError, asyncio.IncompleteReadError, TimeoutError, OSError) as error:
            if isinstance(error, socks5.SocksError) and error.reply is not None:
                socks5.reply(writer, error.reply)
            self.report("socks-failed", {"forward": entry.label, "reason": one_line(error)})
            writer.close()
            return None

    async def _outbound(self, label: str, target: Target, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, *, socks: bool = False) -> None:
        stream = self.link.open_stream(encode(wire.open_message(target)))
        await self._connection(label, target, stream, reader, writer, expect_reply=not socks, socks=socks)

    async def _connection(self, label: str, target: Target, stream: Stream, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter, *, expect_reply: bool = False, socks: bool = False) -> None:
        """One forwarded connection, counted and reported. ``socks``: answer the SOCKS client from the reply."""
        stats, number, started = self._stat(label), next(self._ids), asyncio.get_running_loop().time()
        stats.open += 1
        stats.total += 1
        self.report("open", {"forward": label, "id": number, "target": str(target), "stream": stream.id})
        traffic = Traffic(stats)
        try:
            if socks:
                try:
                    wire.parse_reply(await read_header(stream))
                except (StreamClosed, WireError) as error:
                    code = error.code if isinstance(error, StreamClosed) else socks5.FAILURE
                    socks5.reply(writer, socks5.REPLY_FOR.get(code, socks5.FAILURE))
                    traffic.error = str(error)
                    writer.close()
                    stream.close()
                    return
                socks5.reply(writer, socks5.SUCCEEDED)
            await splice(stream, reader, writer, traffic, expect_reply=expect_reply)
        finally:
            stats.open -= 1
            self.report("close", {"forward": label, "id": number, "target": str(target), "sent": traffic.sent,
                                  "received": traffic.received, "error": traffic.error,
                                  "seconds": round(asyncio.get_running_loop().time() - started, 3)})

    async def _inbound(self, stream: Stream) -> None:
        """A stream the peer opened: connect to its target if we expose it, else refuse (never an open proxy)."""
        try:
            target = wire.parse_open(await asyncio.wait_for(read_header(stream), HEADER_TIMEOUT))
        except StreamClosed:
            stream.close()
            return
        except (WireError, TimeoutError) as error:
            self._refuse(stream, wire.BAD_HEADER, "?", f"bad stream header: {one_line(error)}")
            return
        label = f"to {target}"
        if target.key() not in self._allowed:
            self._stat(label).refused += 1
            self._refuse(stream, wire.REFUSED, str(target), "not exposed")
            return
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port),
                                                    CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as error:
            code = wire.CONNECTION_REFUSED if isinstance(error, ConnectionRefusedError) else wire.UNREACHABLE
            self._refuse(stream, code, str(target), f"cannot connect: {one_line(error)}", kind="unreachable")
            return
        try:
            await stream.write(encode(wire.OK))
        except (StreamClosed, asyncio.CancelledError) as error:
            reset(writer)
            stream.close()
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        await self._connection(label, target, stream, reader, writer)

    def _refuse(self, stream: Stream, code: int, target: str, reason: str, *, kind: str = "refused") -> None:
        stream.abort(code)
        stream.close()
        self.report(kind, {"target": target, "reason": reason, "stream": stream.id})


async def run_forward(session: ForwardSession) -> int:
    """Start ``session`` and run it until it ends, as a payload's exit code: 1 when the connection ended (the
    reason is in the ``closed`` report), 0 after a ``close()``. Cancelling it closes the session first."""
    await session.start()
    try:
        await session.wait()
    except LaunchError:
        return 1
    except asyncio.CancelledError:
        await session.close()
        raise
    return 0
