"""Helpers for the DHT rendezvous tests: identities made with ``plexus.rendezvous.dht.identity``, profiles built
directly, and a bootstrap node on loopback (real opendht nodes; traffic stays on 127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path

from plexus.profile.model import (
    Authentication,
    DhtRendezvous,
    Endpoint,
    Host,
    Payload,
    Peer,
    Profile,
    Rendezvous,
    Stun,
)
from plexus.rendezvous.dht.identity import IdentityFiles, generate
from plexus.rendezvous.offer import Offer

LOOPBACK = "127.0.0.1"
APP = "plexus-test"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def identity(directory: Path, host_id: str) -> IdentityFiles:
    """A fresh identity for ``host_id`` in ``directory/<host_id>/`` (made once per directory)."""
    files = IdentityFiles(directory / host_id / "identity.crt", directory / host_id / "identity.key")
    if not files.certificate.exists():
        generate(files, host_id, f"{host_id}@plexus.test")
    return files


def profile(directory: Path, host_id: str, peers: list[str], bootstrap: list[Endpoint], *,
            role: str = "accept", timeout: float = 10.0, method: str = "smime", app: str = APP,
            keys_only: bool = False, max_age: float = 120.0) -> Profile:
    """A DHT profile for ``host_id``; the peers' certificates are their identities in the same directory.
    ``keys_only``: the identity comes from rendezvous.dht.keys instead of rendezvous.smime."""
    ours = identity(directory, host_id)
    auth = Authentication(method, None if keys_only else ours.certificate,  # type: ignore[arg-type]
                          None if keys_only else ours.key)
    dht = DhtRendezvous(bootstrap=tuple(bootstrap), app=app, keys=ours.certificate.parent)
    return Profile(
        name=f"{host_id}-dht", host=Host(host_id, f"{host_id}@plexus.test"), role=role,  # type: ignore[arg-type]
        peers=tuple(Peer(peer, f"{peer}@plexus.test", identity(directory, peer).certificate) for peer in peers),
        rendezvous=Rendezvous(authentication=auth, dht=dht, timeout=timeout, max_age=max_age),
        stun=Stun(servers=(Endpoint(LOOPBACK, 3478),)), payload=Payload(template="socat"))


class Recorder:
    """An ``OfferExchange`` trace: the offers it sent and received, in order."""

    def __init__(self) -> None:
        self.sent: list[Offer] = []
        self.received: list[Offer] = []

    def __call__(self, what: str, offer: Offer) -> None:
        (self.sent if what == "sent" else self.received).append(offer)
