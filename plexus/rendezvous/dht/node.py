"""An asyncio face for one OpenDHT node (the ``opendht`` PyPI wheel), which runs in a child process
(``dht_worker``, see there why) and talks JSON lines over its stdin/stdout.

The node talks only to the ``bootstrap`` endpoints it is given and to the nodes they name: the wheel has no
default bootstrap host, and LAN peer discovery is switched off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plexus.errors import RendezvousError
from plexus.profile.model import Endpoint

log = logging.getLogger("plexus.rendezvous")

VALUE_TYPE = "plexus/1"  # opendht Value.user_type of our values; anything else on our key is foreign
START_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
WORKER = Path(__file__).with_name("worker.py")


@dataclass(frozen=True)
class Received:
    """One value seen on a key we listen to."""

    data: bytes
    value_id: int
    user_type: str


def worker_argv(*, port: int = 0, network: int = 0, bootstrap: Iterable[Endpoint] = (), bind: str = "",
                bootstrap_mode: bool = False, serve: bool = False) -> list[str]:
    """The command line of a node process (``serve``: a daemon that runs until SIGTERM, e.g. the lab's)."""
    argv = [sys.executable, str(WORKER), "--port", str(port), "--network", str(network)]
    argv += [f"--bootstrap={endpoint}" for endpoint in bootstrap]
    argv += ["--bind", bind] if bind else []
    argv += ["--bootstrap-mode"] if bootstrap_mode else []
    argv += ["--serve"] if serve else []
    return argv


class DhtNode:
    """One running DHT node: ``start``, ``put``/``listen``, ``close`` (also as ``async with``)."""

    def __init__(self, *, port: int = 0, network: int = 0, bootstrap: Iterable[Endpoint] = (),
                 bind: str = "", bootstrap_mode: bool = False) -> None:
        self.bootstrap_nodes = tuple(bootstrap)
        self._argv = worker_argv(port=port, network=network, bootstrap=self.bootstrap_nodes, bind=bind,
                                 bootstrap_mode=bootstrap_mode)
        self.port = port
        self.bound_port = 0
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._requests: dict[int, asyncio.Future[Any]] = {}
        self._listeners: dict[str, Callable[[Received], None]] = {}
        self._ids = itertools.count(1)
        self._ready: asyncio.Future[dict[str, Any]] | None = None

    async def __aenter__(self) -> DhtNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        self._ready = asyncio.get_running_loop().create_future()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self._argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=1 << 20)
        except OSError as error:
            raise RendezvousError(f"cannot start the DHT node: {error.strerror}") from error
        self._reader = asyncio.create_task(self._read(), name="plexus-dht-node")
        try:
            ready = await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
        except (TimeoutError, RendezvousError) as error:
            await self.close()
            if isinstance(error, RendezvousError):
                raise
            raise RendezvousError(f"the DHT node did not start within {START_TIMEOUT:g} s") from error
        self.bound_port = int(ready["port"])

    def rebootstrap(self) -> None:
        """Ping every configured bootstrap node (again): cheap, and it re-joins a restarted bootstrap node."""
        self._send({"op": "bootstrap"})

    async def reached(self, endpoint: Endpoint, timeout: float) -> bool:
        """Whether the node at ``endpoint`` answers a ping within ``timeout``."""
        return bool(await self._request({"op": "ping", "address": str(endpoint)}, timeout))

    async def any_reached(self, timeout: float) -> bool:
        """Whether any bootstrap node answers a ping within ``timeout``."""
        results = await asyncio.gather(*(self.reached(endpoint, timeout) for endpoint in self.bootstrap_nodes))
        return any(results)

    async def put(self, key: str, data: bytes, timeout: float, *, user_type: str = VALUE_TYPE,
                  value_id: int = 0) -> bool | None:
        """Store ``data`` under the DHT key hashed from ``key``: True when the nodes closest to the key took it,
        False when the put failed, None when the node did not say within ``timeout`` (it goes on trying: a
        node that went away without a word holds up the answer for seconds). ``value_id`` 0 = a random id."""
        reply = await self._request({"op": "put", "key": key, "data": base64.b64encode(data).decode(),
                                     "type": user_type, "value_id": value_id}, timeout)
        return None if reply is None else bool(reply)

    def warm(self, key: str) -> None:
        """Start looking up ``key``'s nodes now (a get whose values we ignore): a put to it later goes out at once
        instead of first waiting for the lookup, which behind NATs takes about a second."""
        self._send({"op": "warm", "key": key})

    def listen(self, key: str, deliver: Callable[[Received], None]) -> None:
        """Call ``deliver`` (on the event loop) with every value that appears on ``key``, and those already
        there."""
        self._listeners[key] = deliver
        self._send({"op": "listen", "key": key})

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(OSError, RuntimeError):
                assert process.stdin is not None
                process.stdin.write(b'{"op":"quit"}\n')
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for future in self._requests.values():
            if not future.done():
                future.set_result(None)
        self._requests.clear()

    # -- the pipe ----------------------------------------------------------------------------------------------

    def _send(self, command: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None or process.returncode is not None:
            raise RendezvousError("the DHT node is not running")
        process.stdin.write(json.dumps(command, separators=(",", ":")).encode() + b"\n")

    async def _request(self, command: dict[str, Any], timeout: float) -> Any:
        """The node's answer to ``command``; None when it does not answer in time or is not running."""
        request = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[request] = future
        try:
            self._send({**command, "id": request})
            return await asyncio.wait_for(future, timeout)
        except (TimeoutError, RendezvousError):
            return None
        finally:
            self._requests.pop(request, None)

    async def _read(self) -> None:
        process = self._process
        assert process is not None and process.stdout is not None and process.stderr is not None
        stderr: list[str] = []
        drain = asyncio.create_task(self._drain(process.stderr, stderr))
        try:
            while line := await process.stdout.readline():
                try:
                    self._handle(json.loads(line))
                except (ValueError, KeyError, TypeError) as error:
                    log.debug("dht: bad line from the node process: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(drain), 1.0)
        finally:
            drain.cancel()
            if self._ready is not None and not self._ready.done():
                detail = stderr[-1] if stderr else "it exited"
                self._ready.set_exception(RendezvousError(f"the DHT node did not start: {detail}"))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
        """Keep reading the node's stderr (so it never blocks on a full pipe); remember the last lines."""
        while line := await stream.readline():
            lines.append(line.decode(errors="replace").strip())
            del lines[:-5]

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "value":
            deliver = self._listeners.get(event["key"])
            if deliver is not None:
                deliver(Received(base64.b64decode(event["data"]), int(event["value_id"]), str(event["type"])))
        elif kind in ("put", "ping"):
            future = self._requests.get(event["id"])
            if future is not None and not future.done():
                future.set_result(event["ok"])
        elif kind == "ready":
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(event)
        elif kind == "error":
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(RendezvousError(
                    f"the DHT node cannot start on port {self.port}: {event['message']}",
                    hint="choose another rendezvous.dht.port, or 0 for any"))
        elif kind == "warning":
            log.warning("dht: %s", event["message"])
