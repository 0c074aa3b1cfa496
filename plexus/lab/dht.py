"""The lab's DHT bootstrap node: an OpenDHT node (the ``opendht`` wheel's binding, the same version the sites
run) in the server namespace, so that the sites' DHT profiles never reach for a public bootstrap node.

    pid = start_bootstrap(lab)       # in <lab>-srv, UDP BOOTSTRAP_HOST:BOOTSTRAP_PORT, PID recorded (lab down stops it)
    lab.write_profile("b", "alice-dht", **dht_profile_overrides())
    stop_bootstrap(lab)

``python -m plexus.lab.dht --bind ADDRESS --port PORT`` is the node process itself (prints "ready" once bound).
Debian's ``dhtnode`` (bookworm: 2.4) would work too, but needs a package the wheel already makes unnecessary.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from plexus.lab import daemons
from plexus.lab.topology import SOURCE_ROOT, STUN_PRIMARY

BOOTSTRAP_HOST = STUN_PRIMARY[0]  # srv's first address; coturn uses 3478/3479 there, UDP 4222 is free
BOOTSTRAP_PORT = 4222  # opendht's usual port
LABEL = "dht-bootstrap"
LAB_APP = "plexus-lab"


def bootstrap_endpoint() -> str:
    return f"{BOOTSTRAP_HOST}:{BOOTSTRAP_PORT}"


def dht_profile_overrides() -> dict[str, Any]:
    """``Lab.write_profile`` overrides that turn a site's lab profile into its DHT variant (no mailbox)."""
    return {"rendezvous": {"email": None, "dht": {"bootstrap": [bootstrap_endpoint()], "app": LAB_APP}}}


def start_bootstrap(lab: Any, *, timeout: float = 5.0) -> int:
    """Start the bootstrap node in the lab's srv namespace and wait until it is bound; its PID."""
    log_name = f"{LABEL}.out"
    log_file = lab.state.logs / log_name
    offset = log_file.stat().st_size if log_file.exists() else 0
    pythonpath = os.pathsep.join(p for p in (SOURCE_ROOT, os.environ.get("PYTHONPATH")) if p)
    pid = daemons.start(lab.state, lab.ns("srv"), LABEL,
                        [sys.executable, "-m", "plexus.lab.dht", "--bind", BOOTSTRAP_HOST,
                         "--port", str(BOOTSTRAP_PORT)], env={"PYTHONPATH": pythonpath})

    def ready() -> bool:
        with log_file.open("rb") as stream:
            stream.seek(offset)
            return b"ready" in stream.read()

    daemons.wait_until(ready, "the DHT bootstrap node", lab.state, timeout=timeout, pids=[pid], logs=[log_name])
    return pid


def stop_bootstrap(lab: Any) -> None:
    """Stop the bootstrap node (by its recorded PID); nothing happens when it does not run."""
    daemons.stop(lab.state, [LABEL])


async def _serve(bind: str, port: int) -> None:
    from plexus.rendezvous.dht_node import DhtNode

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with DhtNode(port=port, bind=bind, bootstrap_mode=True) as node:
        print(f"ready: DHT bootstrap node on {bind}:{node.bound_port}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plexus.lab.dht", description="a DHT bootstrap node")
    parser.add_argument("--bind", default=BOOTSTRAP_HOST)
    parser.add_argument("--port", type=int, default=BOOTSTRAP_PORT)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.bind, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
