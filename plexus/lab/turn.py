"""The lab's TURN relays (RFC 8656), coturn in ``srv`` beside the STUN-only instances of ``stun.py``:

- ``turn`` on ``TURN_SERVER``: long-term credentials (lt-cred-mech), realm ``TURN_REALM``, one user per site
  user (alice, bob, carol) with a password made per lab (``passwords/turn-<user>``, 0600);
- ``turn-rest`` on ``TURN_REST_SERVER``: the TURN REST scheme (use-auth-secret): the username is
  ``<expiry unix time>:<name>``, the password base64(HMAC-SHA1(secret, username)); the secret is made per lab
  (``passwords/turn-secret``, 0600).

Both relay from ``TURN_SERVER``'s address on their own bounded port range, only to peers in 198.18.0.0/15 (the
lab), over UDP, without TLS, DTLS or the telnet CLI. Secrets go into 0600 config files (``-c``), never argv.

Live allocations are counted from the long-term server's verbose log, where coturn 4.6 writes
``session <id>: new, realm=<...>, username=<...>, lifetime=N`` when an allocation is made and
``session <id>: delete: ...`` when it is gone (deleted with a zero-lifetime Refresh, expired, or its session
closed); this build has no Prometheus exporter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import socket
import time
from typing import Protocol

from aioice import stun as codec

from plexus.lab import daemons, system
from plexus.lab.state import LabState
from plexus.lab.topology import (
    SITE_USERS,
    TURN_REALM,
    TURN_RELAY_PORTS,
    TURN_REST_SERVER,
    TURN_SERVER,
    Topology,
)

LABELS = ("turn", "turn-rest")
SERVERS = {"turn": TURN_SERVER, "turn-rest": TURN_REST_SERVER}
SECRET_NAME = "turn-secret"
_NEW = re.compile(r"session (\d+): new,")
_DELETE = re.compile(r"session (\d+): delete:")
_UDP_TRANSPORT = 0x11000000


class HasState(Protocol):
    @property
    def state(self) -> LabState: ...


def password_name(user: str) -> str:
    """The file under ``passwords/`` holding the TURN password of ``user`` (alice/bob/carol or a/b/c)."""
    return f"turn-{SITE_USERS.get(user, user)}"


def rest_credentials(secret: str, name: str, *, ttl: float = 600.0, now: float | None = None) -> tuple[str, str]:
    """TURN REST credentials for ``name``, valid ``ttl`` seconds: (``"<expiry>:<name>"``, base64 HMAC-SHA1)."""
    username = f"{int((time.time() if now is None else now) + ttl)}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def write_config(state: LabState) -> None:
    """Make the TURN passwords and the shared secret, and write both coturn config files (mode 0600)."""
    users = [f"user={user}:{state.make_password(password_name(user))}" for user in SITE_USERS.values()]
    secret = state.make_password(SECRET_NAME)
    _write_private(state.etc / "turn.conf", [*_common(state, "turn"), "lt-cred-mech", *users])
    _write_private(state.etc / "turn-rest.conf",
                   [*_common(state, "turn-rest"), "use-auth-secret", f"static-auth-secret={secret}"])


def _common(state: LabState, label: str) -> list[str]:
    host, port = SERVERS[label]
    low, high = TURN_RELAY_PORTS[label]
    return [f"listening-ip={host}", f"listening-port={port}", f"relay-ip={host}", f"min-port={low}",
            f"max-port={high}", f"realm={TURN_REALM}", "no-tls", "no-dtls", "no-cli", "no-tcp-relay",
            "no-multicast-peers", "denied-peer-ip=0.0.0.0-255.255.255.255",
            "allowed-peer-ip=198.18.0.0-198.19.255.255",  # allowed wins over denied: the lab only
            "verbose", "simple-log", f"log-file={state.logs / f'{label}.log'}",
            f"pidfile={state.dir / f'{label}.pidfile'}", f"userdb={state.dir / f'{label}-db.sqlite'}"]


def _write_private(path: os.PathLike[str], lines: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")


def start(topology: Topology, state: LabState, *, wait: bool = True) -> None:
    for label in LABELS:
        daemons.start(state, topology.ns("srv"), label, ["turnserver", "-c", str(state.etc / f"{label}.conf")])
    if wait:
        wait_ready(topology, state)


def wait_ready(topology: Topology, state: LabState, *, timeout: float = 10.0) -> None:
    pids = [pid for label, pid in state.pids().items() if label in LABELS]
    daemons.wait_until(lambda: answers(topology.ns("srv")), "TURN servers (coturn)", state, timeout=timeout,
                       pids=pids, logs=[f"{label}.{ext}" for label in LABELS for ext in ("out", "log")])


def challenge(server: tuple[str, int], timeout: float = 0.2) -> int | None:
    """Send an unauthenticated Allocate to ``server``; the error code of its answer (a TURN server with
    credentials says 401 with a REALM and a NONCE), None without an answer. Call it inside a namespace."""
    request = codec.Message(message_method=codec.Method.ALLOCATE, message_class=codec.Class.REQUEST)
    request.attributes["REQUESTED-TRANSPORT"] = _UDP_TRANSPORT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.settimeout(timeout)
        probe.sendto(bytes(request), server)
        try:
            reply = codec.parse_message(probe.recv(2048))
        except (OSError, ValueError):
            return None
    if reply.transaction_id != request.transaction_id or reply.message_class != codec.Class.ERROR:
        return None
    if "REALM" not in reply.attributes or "NONCE" not in reply.attributes:
        return None
    code: int = reply.attributes["ERROR-CODE"][0]
    return code


def answers(namespace: str) -> bool:
    """True when both TURN servers challenge an unauthenticated Allocate with 401."""
    return system.in_netns(namespace, lambda: all(challenge(server) == 401 for server in SERVERS.values()))


def allocations(lab: LabState | HasState, label: str = "turn") -> int:
    """The number of live allocations on the lab's long-term TURN server (``label="turn-rest"``: the REST one),
    counted from its log: sessions with a ``new`` line and no ``delete`` line after it."""
    state = lab if isinstance(lab, LabState) else lab.state
    try:
        text = (state.logs / f"{label}.log").read_text(errors="replace")
    except FileNotFoundError:
        return 0
    live: set[str] = set()
    for line in text.splitlines():
        if made := _NEW.search(line):
            live.add(made.group(1))
        elif gone := _DELETE.search(line):
            live.discard(gone.group(1))
    return len(live)


def wait_allocations(lab: LabState | HasState, expected: int, *, timeout: float = 5.0,
                     label: str = "turn") -> int:
    """Poll ``allocations`` until it is ``expected`` or ``timeout`` passes; returns the last count. coturn logs
    a deleted allocation's ``delete`` line up to about a second after the zero-lifetime Refresh."""
    deadline = time.monotonic() + timeout
    while (count := allocations(lab, label)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def stop(state: LabState) -> None:
    daemons.stop(state, list(LABELS))
