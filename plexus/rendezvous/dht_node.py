"""An asyncio face for one OpenDHT node (``opendht.DhtRunner``, from the ``opendht`` PyPI wheel).

The runner lives on its own C++ thread and calls back into Python there; every callback here only hands its
result to the event loop (``call_soon_threadsafe``) and never touches it once the node is closed. Two traps of
the binding are avoided on purpose:

- ``shutdown()`` followed by ``join()`` on the loop thread deadlocks while a listen callback waits for the GIL,
  so ``close`` waits for the shutdown callback and joins in a worker thread;
- the runner never bootstraps by itself (no default bootstrap host in the wheel), and LAN peer discovery is
  switched off, so the node talks only to the ``bootstrap`` endpoints it is given and to nodes they name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from plexus.errors import RendezvousError
from plexus.profile.model import Endpoint

log = logging.getLogger("plexus.rendezvous")

VALUE_TYPE = "plexus/1"  # opendht Value.user_type of our values; anything else on our key is foreign
SHUTDOWN_TIMEOUT = 5.0
_GOOD_NODE = re.compile(r"^\s*Node [0-9a-f]+ (\S+)\s.*\[good\]", re.MULTILINE)


def _opendht() -> Any:
    try:
        import opendht
    except ImportError as error:
        raise RendezvousError(f"the DHT rendezvous needs the opendht package ({error})",
                              hint="pip install 'plexus[dht]'") from None
    return opendht


@dataclass(frozen=True)
class Received:
    """One value seen on a key we listen to."""

    data: bytes
    value_id: int
    user_type: str


class DhtNode:
    """One running DHT node: ``start``, ``put``/``listen``, ``close`` (also as ``async with``)."""

    def __init__(self, *, port: int = 0, network: int = 0, bootstrap: Iterable[Endpoint] = (),
                 bind: str = "", bootstrap_mode: bool = False) -> None:
        self.port = port
        self.network = network
        self.bootstrap_nodes = tuple(bootstrap)
        self.bind = bind
        self.bootstrap_mode = bootstrap_mode
        self._dht = _opendht()
        self._runner: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._listens: list[Any] = []

    async def __aenter__(self) -> DhtNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def bound_port(self) -> int:
        return int(self._runner.getBound().getPort()) if self._runner is not None else 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        config = self._dht.DhtConfig()
        config.setNetwork(self.network)
        config.setPeerDiscovery(False, False)
        config.setBootstrapMode(self.bootstrap_mode)
        runner = self._dht.DhtRunner()
        try:
            if self.bind:
                runner.run(port=self.port, ipv4=self.bind, config=config)
            else:
                runner.run(port=self.port, config=config)
        except Exception as error:  # the binding raises RuntimeError/OSError-like errors from C++
            raise RendezvousError(f"the DHT node cannot start on port {self.port}: {error}",
                                  hint="choose another rendezvous.dht.port, or 0 for any") from None
        self._runner = runner
        self.rebootstrap()

    def rebootstrap(self) -> None:
        """Ping every configured bootstrap node (again): cheap, and it re-joins a restarted bootstrap node."""
        for endpoint in self.bootstrap_nodes:
            try:
                self._runner.bootstrap(endpoint.host, str(endpoint.port))
            except Exception as error:
                log.warning("dht: cannot use bootstrap node %s: %s", endpoint, error)

    def good_nodes(self) -> set[str]:
        """``ip:port`` of the nodes in our IPv4 routing table that answered recently (no network traffic)."""
        if self._runner is None:
            return set()
        table = self._runner.getRoutingTablesLog(socket.AF_INET)
        return {match.group(1) for match in _GOOD_NODE.finditer(table)}

    async def reached(self, endpoint: Endpoint, timeout: float) -> bool:
        """Whether the bootstrap node ``endpoint`` answered us (it then shows as a good node) within
        ``timeout``; ``rebootstrap`` asks it. Polls our own routing table, sends nothing itself."""
        try:
            addresses = {str(address) for address in self._dht.SockAddr.resolve(endpoint.host, str(endpoint.port))}
        except Exception:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not addresses & self.good_nodes():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def put(self, key: str, data: bytes, timeout: float, *, user_type: str = VALUE_TYPE) -> bool:
        """Store ``data`` under the DHT key hashed from ``key``; True when at least one node took it."""
        value = self._dht.Value(data)
        value.user_type = user_type
        future = self._future()
        self._runner.put(self._dht.InfoHash.get(key), value, lambda ok, _nodes: self._resolve(future, bool(ok)))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    def listen(self, key: str, deliver: Callable[[Received], None]) -> None:
        """Call ``deliver`` (on the event loop) with every value that appears on ``key``, and those already
        there."""
        loop = self._loop
        assert loop is not None and self._runner is not None

        def on_value(value: Any, expired: bool) -> bool:
            if self._closed:
                return False
            if not expired:
                received = Received(bytes(value.data), int(value.id), str(value.user_type))
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    loop.call_soon_threadsafe(deliver, received)
            return True

        self._listens.append(self._runner.listen(self._dht.InfoHash.get(key), on_value))

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None or self._closed:
            return
        self._closed = True
        for token in self._listens:
            with contextlib.suppress(Exception):
                runner.cancelListen(token)
        self._listens.clear()
        done = self._future()
        runner.shutdown(lambda: self._resolve(done, True))
        try:
            await asyncio.wait_for(done, SHUTDOWN_TIMEOUT)
            await asyncio.wait_for(asyncio.to_thread(runner.join), SHUTDOWN_TIMEOUT)
        except TimeoutError:
            log.warning("dht: the node did not stop within %g s", SHUTDOWN_TIMEOUT)

    def _future(self) -> asyncio.Future[bool]:
        assert self._loop is not None
        return self._loop.create_future()

    def _resolve(self, future: asyncio.Future[bool], result: bool) -> None:
        """Called on the DHT thread: hand the result to the loop, if anyone still waits."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def settle() -> None:
            if not future.done():
                future.set_result(result)

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)
