"""``plexus status``: a running ``plexus up`` answers on a unix socket in its run directory (``run_root()/status/
PROFILE.sock``, 0600 in a 0700 folder: the owner only) with one JSON snapshot of its sessions, like ``wg show``.

``StatusBoard`` is a ``Reporter`` wrapper that keeps, per peer, what the events said: the phase and its status,
since when, the path, our local and public endpoints and the peer's, restarts, the payload's pid and state, and
the last error. ``serve`` answers each connection with the snapshot and closes it; ``query`` is the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from plexus.events import Event, Reporter

MAX_ANSWER = 4 * 1024 * 1024


def status_dir() -> Path:
    from plexus.launch.runner import run_root

    return run_root() / "status"


def socket_path(profile: str) -> Path:
    return status_dir() / f"{profile}.sock"


def _endpoint(value: Any) -> str | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}:{value[1]}"
    return None


class StatusBoard:
    """Passes every event on to ``inner`` and remembers each peer's state for ``plexus status``."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.profile, self.role = "", ""
        self.started = time.time()
        self.state = ""  # what plexus itself does: "waiting for invites from alice, carol"
        self.peers: dict[str, dict[str, Any]] = {}

    def __call__(self, event: Event) -> None:
        self.inner(event)
        if event.peer is None:
            if event.phase == "offer-received" and event.status == "start":
                self.state = event.message
            return
        peer = self.peers.setdefault(event.peer, {"peer": event.peer, "restarts": 0, "path": None,
                                                  "local": None, "public": None, "peer_endpoint": None,
                                                  "payload": None, "last_error": None})
        if peer.get("phase") != event.phase:
            peer["since"] = event.time
        peer.update(phase=event.phase, status=event.status, message=event.message)
        data = event.data or {}
        if event.phase == "nat" and event.status == "ok":
            peer.update(local=_endpoint(data.get("inner")), public=_endpoint(data.get("outer")), path=None)
        if "peer_endpoint" in data:
            peer["peer_endpoint"] = _endpoint(data["peer_endpoint"])
        if event.phase == "punch" and event.status == "ok":
            peer["path"] = data.get("path")
        if event.phase == "relay" and event.status == "ok":
            peer["relayed"] = _endpoint(data.get("relayed"))
        if event.phase == "launch" and event.status == "ok":
            peer["payload"] = {"pid": data.get("pid"), "state": "running"}
        if event.phase == "launch" and "restart" in data:
            peer["restarts"] = data["restart"]
        if event.phase == "payload" and event.message == "ready" and peer["payload"]:
            peer["payload"]["state"] = "ready"
        if event.phase == "payload" and event.status in ("ok", "fail") and "exit_code" in data and peer["payload"]:
            peer["payload"]["state"] = f"exited {data['exit_code']}"
        if event.status == "fail":
            peer["last_error"] = event.message

    def snapshot(self) -> dict[str, Any]:
        return {"profile": self.profile, "role": self.role, "pid": os.getpid(), "started": self.started,
                "state": self.state, "peers": list(self.peers.values())}


async def serve(board: StatusBoard, profile: str) -> asyncio.AbstractServer | None:
    """Answer ``plexus status`` on the profile's socket until the returned server is closed (None: the run
    directory cannot be used; status is then simply unavailable)."""
    path = socket_path(profile)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a plexus that died without cleaning up

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                writer.write(json.dumps(board.snapshot()).encode() + b"\n")
                await writer.drain()
            writer.close()

        old = os.umask(0o177)  # the socket is created 0600: the owner only
        try:
            return await asyncio.start_unix_server(answer, path=str(path))
        finally:
            os.umask(old)
    except OSError:
        return None


async def stop_serving(server: asyncio.AbstractServer | None, profile: str) -> None:
    if server is None:
        return
    server.close()
    with contextlib.suppress(Exception):
        await server.wait_closed()
    with contextlib.suppress(FileNotFoundError):
        socket_path(profile).unlink()


def query(path: Path, timeout: float = 2.0) -> dict[str, Any]:
    """One snapshot from a running plexus; OSError / ValueError when it does not answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        data = b""
        while chunk := client.recv(65536):
            data += chunk
            if len(data) > MAX_ANSWER:
                raise ValueError("answer too large")
    answer = json.loads(data.decode())
    if not isinstance(answer, dict):
        raise ValueError("not a status object")
    return answer
