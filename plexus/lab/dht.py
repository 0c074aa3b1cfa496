"""The lab's DHT bootstrap node: an OpenDHT node (the ``opendht`` wheel's binding, the same version the sites
run) in the server namespace, so that the sites' DHT profiles never reach for a public bootstrap node.

    pid = start_bootstrap(lab)       # in <lab>-srv, UDP BOOTSTRAP_HOST:BOOTSTRAP_PORT, PID recorded (lab down stops it)
    lab.write_profile("b", "alice-dht", **dht_profile_overrides())
    stop_bootstrap(lab)

The node process is ``plexus/rendezvous/dht/worker.py --serve`` (it prints a "ready" line once bound), a
normal node (not opendht's bootstrap mode): it stores values and keeps listens, so sites behind NATs that
cannot reach each other directly still meet through it.
Debian's ``dhtnode`` (bookworm: 2.4) would work too, but needs a package the wheel already makes unnecessary.
"""

from __future__ import annotations

from typing import Any

from plexus.lab import daemons
from plexus.lab.topology import STUN_PRIMARY
from plexus.rendezvous.dht.node import worker_argv

BOOTSTRAP_HOST = STUN_PRIMARY[0]  # srv's first address; coturn uses 3478/3479 there, UDP 4222 is free
BOOTSTRAP_PORT = 4222  # opendht's usual port
LABEL = "dht-bootstrap"
LAB_APP = "plexus-lab"


def bootstrap_endpoint() -> str:
    return f"{BOOTSTRAP_HOST}:{BOOTSTRAP_PORT}"


def dht_profile_overrides(app: str = LAB_APP) -> dict[str, Any]:
    """``Lab.write_profile`` overrides that turn a site's lab profile into its DHT variant (no mailbox);
    another ``app`` gives other DHT keys (tests that must not see each other's values)."""
    return {"rendezvous": {"email": None, "dht": {"bootstrap": [bootstrap_endpoint()], "app": app}}}


def start_bootstrap(lab: Any, *, timeout: float = 5.0) -> int:
    """Start the bootstrap node in the lab's srv namespace and wait until it is bound; its PID. A node that
    already runs (``lab up`` starts one) is kept."""
    running = lab.state.pids().get(LABEL)
    if running is not None:
        return int(running)
    log_name = f"{LABEL}.out"
    log_file = lab.state.logs / log_name
    offset = log_file.stat().st_size if log_file.exists() else 0
    argv = worker_argv(port=BOOTSTRAP_PORT, bind=BOOTSTRAP_HOST, serve=True)
    pid = daemons.start(lab.state, lab.ns("srv"), LABEL, argv)

    def ready() -> bool:
        with log_file.open("rb") as stream:
            stream.seek(offset)
            return b"ready" in stream.read()

    daemons.wait_until(ready, "the DHT bootstrap node", lab.state, timeout=timeout, pids=[pid], logs=[log_name])
    return pid


def available() -> bool:
    """Whether the opendht binding is installed (the ``dht`` extra)."""
    import importlib.util

    return importlib.util.find_spec("opendht") is not None


# The sites' DHT profiles: name -> (site, the site's mail profile it is a variant of)
SITE_PROFILES = {"b": "alice-dht", "a": "bob-dht", "c": "bob-dht"}


def set_up(lab: Any) -> bool:
    """At ``lab up``: the bootstrap node and the sites' DHT profiles (alice-dht on b, bob-dht on a and c);
    False when opendht is not installed (the mail rendezvous works without it)."""
    if not available():
        return False
    start_bootstrap(lab)
    for site, name in SITE_PROFILES.items():
        lab.write_profile(site, name, **dht_profile_overrides())
    return True


def stop_bootstrap(lab: Any) -> None:
    """Stop the bootstrap node (by its recorded PID); nothing happens when it does not run."""
    daemons.stop(lab.state, [LABEL])
