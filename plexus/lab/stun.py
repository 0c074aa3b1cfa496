"""The lab's STUN servers: coturn in STUN-only mode on the two server addresses with an alternate port, which
makes it a full RFC 5780 server (OTHER-ADDRESS, CHANGE-REQUEST); and a second coturn on one address and port
only (``STUN_PLAIN``), an ordinary server without RFC 5780 such as most public ones."""

from __future__ import annotations

import os
import socket
import struct

from plexus.lab import daemons, system
from plexus.lab.state import LabState
from plexus.lab.topology import STUN_ALTERNATE, STUN_PLAIN, STUN_PRIMARY, Topology

_MAGIC_COOKIE = 0x2112A442


def start(topology: Topology, state: LabState, *, wait: bool = True) -> None:
    argv = ["turnserver", "-n", "-S", "--no-cli", "--no-tls", "--no-dtls", "--no-auth",
            "-L", STUN_PRIMARY[0], "-L", STUN_ALTERNATE[0], "-p", str(STUN_PRIMARY[1]),
            "--alt-listening-port", str(STUN_ALTERNATE[1]),
            "--log-file", str(state.logs / "turnserver.log"), "--simple-log",
            "--pidfile", str(state.dir / "turnserver.pidfile"), "--userdb", str(state.dir / "turndb.sqlite")]
    daemons.start(state, topology.ns("srv"), "turnserver", argv)
    plain = ["turnserver", "-n", "-S", "--no-cli", "--no-tls", "--no-dtls", "--no-auth",
             "-L", STUN_PLAIN[0], "-p", str(STUN_PLAIN[1]),
             "--log-file", str(state.logs / "turnserver-plain.log"), "--simple-log",
             "--pidfile", str(state.dir / "turnserver-plain.pidfile"),
             "--userdb", str(state.dir / "turndb-plain.sqlite")]
    daemons.start(state, topology.ns("srv"), "turnserver-plain", plain)
    if wait:
        wait_ready(topology, state)


def wait_ready(topology: Topology, state: LabState, *, timeout: float = 10.0) -> None:
    pids = [pid for label, pid in state.pids().items() if label in ("turnserver", "turnserver-plain")]
    daemons.wait_until(lambda: answers(topology.ns("srv")), "STUN servers (coturn)", state, timeout=timeout,
                       pids=pids, logs=["turnserver.out", "turnserver.log", "turnserver-plain.log"])


def answers(namespace: str) -> bool:
    """True when the primary and the alternate address+port, and the plain server, answer a Binding request."""
    def probe() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe_socket:
            probe_socket.settimeout(0.1)
            for server in ((STUN_PRIMARY[0], STUN_PRIMARY[1]), (STUN_ALTERNATE[0], STUN_ALTERNATE[1]),
                           (STUN_ALTERNATE[0], STUN_PRIMARY[1]), (STUN_PRIMARY[0], STUN_ALTERNATE[1]), STUN_PLAIN):
                transaction = os.urandom(12)
                probe_socket.sendto(struct.pack("!HHI", 0x0001, 0, _MAGIC_COOKIE) + transaction, server)
                try:
                    reply, _ = probe_socket.recvfrom(2048)
                except OSError:
                    return False
                if reply[8:20] != transaction:
                    return False
        return True

    return system.in_netns(namespace, probe)


def stop(state: LabState) -> None:
    daemons.stop(state, ["turnserver", "turnserver-plain"])
