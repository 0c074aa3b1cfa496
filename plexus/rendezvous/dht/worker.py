"""One OpenDHT node in a process of its own, driven by JSON lines on stdin/stdout (``plexus.rendezvous.dht.node``
is the other end). Standard library and ``opendht`` only, so it runs by path without plexus on sys.path.

Why a process: the opendht 4.x binding's ``DhtRunner.join()`` holds the GIL while it waits for the DHT thread,
which may itself wait for the GIL to run a Python callback (a deadlock), and its shutdown callback can fire twice
and free a Python object twice (a crash; both seen here with several nodes in one process). A node in its own
process never needs ``join``: it ends with ``os._exit`` and takes its threads along.

Commands (one JSON object per line): ``{"op": "put", "id": n, "key": text, "data": b64, "type": text,
"value_id": n}``,
``{"op": "listen", "key": text}``, ``{"op": "warm", "key": text}``, ``{"op": "bootstrap"}``,
``{"op": "ping", "id": n, "address": "host:port"}``, ``{"op": "quit"}``.
Events: ``ready`` (with ``port``), ``error``, ``put`` (``id``, ``ok``), ``value`` (``key``, ``data``, ``value_id``,
``type``), ``ping`` (``id``, ``ok``). Nothing here calls into the runner in a way that waits for the DHT thread
while holding the GIL (``getRoutingTablesLog`` does, and deadlocks against a callback).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import sys
import threading
from typing import Any

_output = threading.Lock()


def emit(event: dict[str, Any]) -> None:
    line = json.dumps(event, separators=(",", ":")) + "\n"
    with _output:
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):  # our parent is gone
            os._exit(0)


def start(args: argparse.Namespace) -> Any:
    import opendht

    config = opendht.DhtConfig()
    config.setNetwork(args.network)
    config.setPeerDiscovery(False, False)  # never look for nodes on the LAN: only the bootstrap nodes given
    config.setBootstrapMode(args.bootstrap_mode)
    runner = opendht.DhtRunner()
    if args.bind:
        runner.run(port=args.port, ipv4=args.bind, config=config)
    else:
        runner.run(port=args.port, config=config)
    return runner


def bootstrap(runner: Any, nodes: list[str]) -> None:
    for node in nodes:
        host, _, port = node.rpartition(":")
        try:
            runner.bootstrap(host.strip("[]"), port)
        except Exception as error:
            emit({"event": "warning", "message": f"bootstrap node {node}: {error}"})


def on_value(key: str) -> Any:
    def deliver(value: Any, expired: bool) -> bool:
        if not expired:
            emit({"event": "value", "key": key, "data": base64.b64encode(value.data).decode(),
                  "value_id": int(value.id), "type": str(value.user_type)})
        return True

    return deliver


def serve(runner: Any, args: argparse.Namespace) -> None:
    import opendht

    for line in sys.stdin:
        try:
            command = json.loads(line)
            op = command["op"]
        except (ValueError, KeyError, TypeError):
            emit({"event": "warning", "message": f"bad command {line[:80]!r}"})
            continue
        if op == "quit":
            break
        if op == "put":
            value = opendht.Value(base64.b64decode(command["data"]))
            value.user_type = command["type"]
            if command.get("value_id"):
                value.id = command["value_id"]  # a retried put is the same value, not a second one
            request = command["id"]
            runner.put(opendht.InfoHash.get(command["key"]), value,
                       lambda ok, _nodes, request=request: emit({"event": "put", "id": request, "ok": bool(ok)}))
        elif op == "listen":
            runner.listen(opendht.InfoHash.get(command["key"]), on_value(command["key"]))
        elif op == "warm":  # look the key up now, so that a later put finds its nodes at once
            runner.get(opendht.InfoHash.get(command["key"]), lambda value: True, lambda ok, nodes: None)
        elif op == "bootstrap":
            bootstrap(runner, args.bootstrap)
        elif op == "ping":  # does this node answer? (routing-table queries would block on the DHT thread)
            request = command["id"]
            host, _, port = command["address"].rpartition(":")
            addresses = opendht.SockAddr.resolve(host.strip("[]"), port)
            if not addresses:
                emit({"event": "ping", "id": request, "ok": False})
            for address in addresses[:1]:
                runner.ping(address, lambda ok, request=request: emit({"event": "ping", "id": request,
                                                                       "ok": bool(ok)}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one OpenDHT node driven through stdin/stdout")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--network", type=int, default=0)
    parser.add_argument("--bind", default="")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="HOST:PORT")
    parser.add_argument("--bootstrap-mode", action="store_true", help="run as a bootstrap node")
    parser.add_argument("--serve", action="store_true", help="ignore stdin and run until SIGTERM (a daemon)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which ends us by closing stdin
    try:
        runner = start(args)
    except Exception as error:
        emit({"event": "error", "message": f"{type(error).__name__}: {error}"})
        return 1
    bootstrap(runner, args.bootstrap)
    emit({"event": "ready", "port": int(runner.getBound().getPort())})
    if args.serve:
        while True:
            signal.pause()
    serve(runner, args)
    sys.stdout.flush()
    os._exit(0)  # no join (see above): the node's threads end with the process


if __name__ == "__main__":
    sys.exit(main())
