"""The sd_notify protocol, spoken directly (no library): one AF_UNIX datagram of ``KEY=value`` lines to the socket
named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace).

``Notifier`` sends READY=1, STATUS=..., WATCHDOG=1 (every half of ``$WATCHDOG_USEC`` from a task, when
``$WATCHDOG_PID`` is ours or unset) and STOPPING=1; without ``$NOTIFY_SOCKET`` every call does nothing.
``ServiceReporter`` wraps a ``plexus up`` reporter: an acceptor is ready once it waits for invites, an initiator
once its payload is ready; each session change becomes one short STATUS line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from typing import Any

from plexus.errors import one_line
from plexus.events import Event, Reporter

log = logging.getLogger("plexus.service")

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
SEND_TIMEOUT = 1.0  # seconds: a datagram to a full queue waits at most this long, then it is dropped
STATUS_LIMIT = 200  # characters of one STATUS line (systemctl status shows it on one line)
STATE_LIMIT = 60  # characters of one peer's part of it


def socket_address(name: str) -> str | None:
    """The AF_UNIX address of a ``$NOTIFY_SOCKET`` value: a path, or ``@name`` for an abstract socket (a leading
    NUL byte); None for anything else (e.g. ``vsock:``, which plexus does not speak)."""
    if name.startswith("@") and len(name) > 1:
        return "\0" + name[1:]
    if name.startswith("/"):
        return name
    return None


def message(fields: Mapping[str, object]) -> bytes:
    """The datagram: ``KEY=value`` lines; a value is one line (newlines become spaces)."""
    lines = []
    for key, value in fields.items():
        if not key or not key.replace("_", "").isalnum() or not key.isupper():
            raise ValueError(f"sd_notify: {key!r} is not a field name (upper-case letters, digits and _)")
        lines.append(f"{key}={' '.join(str(value).splitlines())}")
    return ("\n".join(lines) + "\n").encode()


class Notifier:
    """The service manager's notification socket, or nothing (``enabled`` is False): every method is safe to call
    either way and returns whether a datagram left."""

    def __init__(self, address: str | None = None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = False) -> Notifier:
        """From ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``. ``unset``: remove them from the
        environment, so that the payloads plexus starts (openvpn speaks sd_notify too) do not inherit them."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s: not a path or @name; not notifying the service manager", raw)
        usec: int | None = None
        with contextlib.suppress(ValueError):
            usec = int(env.get("WATCHDOG_USEC", ""))
        pid = env.get("WATCHDOG_PID", "")
        if pid and pid != str(os.getpid()):
            usec = None  # the watchdog is meant for another process (our parent, say)
        if unset:
            for name in ENVIRONMENT:
                env.pop(name, None)
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the manager's timeout), or None without a watchdog."""
        if not self.enabled or self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, **fields: object) -> bool:
        """One datagram with these fields (``send(READY=1, STATUS="...")``); False when disabled or not sent."""
        if self.address is None or not fields:
            return False
        data = message(fields)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(data, self.address)
        except OSError as error:
            if not self._warned:  # once: a missing socket would otherwise fill the log
                self._warned = True
                log.warning("sd_notify to %s failed: %s", self.address.replace("\0", "@"),
                            error.strerror or error)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send(READY=1, **({"STATUS": status} if status else {}))

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def stopping(self, status: str | None = None) -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status else {}))

    async def keep_alive(self) -> None:
        """WATCHDOG=1 every ``watchdog_interval`` seconds, until cancelled (returns at once without a watchdog).
        Run in the event loop, it proves the loop is alive."""
        interval = self.watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def start_watchdog(self) -> asyncio.Task[None] | None:
        """``keep_alive`` as a task of the running loop, or None without a watchdog."""
        if self.watchdog_interval is None:
            return None
        return asyncio.get_running_loop().create_task(self.keep_alive())


def notify(**fields: object) -> bool:
    """One notification from the environment's ``$NOTIFY_SOCKET``: ``notify(READY=1, STATUS="serving")``."""
    return Notifier.from_environ().send(**fields)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ServiceReporter:
    """A ``Reporter`` that passes every event on to ``inner`` and tells the service manager what they mean.

    READY=1 once: an acceptor (``role``) when it waits for invites (``offer-received`` ``start`` without a peer),
    an initiator when a payload is ready (``payload`` ``info`` "ready"; with ``ready_on_launch``, for templates
    that never say so, at ``launch`` ``ok``). STATUS: what plexus does (connecting the mailbox, waiting for
    invites) and each peer's last session change ("alice: punch ok (direct)"); the final ``session`` event (no
    peer, an ``exit_code``) says why plexus exits."""

    def __init__(self, inner: Reporter, notifier: Notifier, *, role: str | None = None,
                 ready_on_launch: bool = False) -> None:
        self.inner, self.notifier, self.role, self.ready_on_launch = inner, notifier, role, ready_on_launch
        self.is_ready = False
        self.waiting = ""  # "waiting for invites from alice, carol"
        self.startup = ""  # the last step before: "rendezvous ok: DHT node connected"
        self.peers: dict[str, str] = {}  # peer -> its last session change
        self.last_status = ""

    def __call__(self, event: Event) -> None:
        self.inner(event)
        if not self.notifier.enabled:
            return
        fields: dict[str, Any] = {}
        if not self.is_ready and self._means_ready(event):
            self.is_ready = True
            fields["READY"] = 1
        status = self._status(event)
        if status is not None and status != self.last_status:
            self.last_status = fields["STATUS"] = status
        if fields:
            self.notifier.send(**fields)

    def _means_ready(self, event: Event) -> bool:
        if self.role == "accept":
            return event.phase == "offer-received" and event.status == "start" and event.peer is None
        if self.role != "initiate":
            return False
        if event.phase == "payload" and event.status == "info" and event.message == "ready":
            return True
        return self.ready_on_launch and event.phase == "launch" and event.status == "ok"

    def _status(self, event: Event) -> str | None:
        if event.peer is None:
            if event.phase == "session" and "exit_code" in event.data:  # the last event: why plexus exits
                word = {"fail": "failed", "stopped": "stopped"}.get(event.status, "done")
                return _clip(f"{word}: {one_line(event.message)}", STATUS_LIMIT)
            if event.phase == "offer-received" and event.status == "start":
                self.waiting = event.message
            elif event.status in ("start", "ok", "fail") and event.phase != "session":
                self.startup = f"{event.phase} {event.status}: {one_line(event.message)}"
            else:
                return None
        else:
            state = self._change(event)
            if state is None:
                return None
            self.peers[event.peer] = _clip(state, STATE_LIMIT)
        first = self.waiting or ("" if self.peers else self.startup)
        parts = ([first] if first else []) + [f"{peer}: {state}" for peer, state in self.peers.items()]
        return _clip("; ".join(parts), STATUS_LIMIT)

    @staticmethod
    def _change(event: Event) -> str | None:
        """One peer's session change in a few words, or None for an event that is none (a start, a note)."""
        if event.status == "info":
            if event.phase == "payload" and event.message == "ready":
                return "payload ready"
            if event.phase == "launch" and "restart" in event.data:
                return f"restarting after exit {event.data.get('exit_code')}"
            return None
        if event.status not in ("ok", "fail", "stopped"):
            return None
        detail = ""
        if event.status == "fail":
            detail = f": {one_line(event.message)}"
        elif event.phase == "punch" and event.data.get("path"):
            detail = f" ({event.data['path']})"
        elif event.phase == "payload":
            detail = f" ({one_line(event.message)})"
        return f"{event.phase} {event.status}{detail}"
