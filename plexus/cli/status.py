"""``plexus status [PROFILE] [--json]``: ask each running ``plexus up`` of this user (``plexus.service.status``)
for its sessions: per peer the phase, path, endpoints, since when, restarts, the payload and the last error."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from plexus.errors import PlexusError
from plexus.service.status import query, socket_path, status_dir


class NotRunning(PlexusError):
    exit_code = 1


def _snapshots(profile: str | None) -> list[dict[str, Any]]:
    paths = [socket_path(profile)] if profile else sorted(status_dir().glob("*.sock"))
    found = []
    for path in paths:
        try:
            found.append(query(path))
        except (OSError, ValueError):
            continue  # a plexus that ended without removing its socket, or another user's
    if not found:
        which = f"for profile {profile}" if profile else "as this user"
        raise NotRunning(f"no running plexus {which} answers (sockets in {status_dir()})",
                         hint="start one with plexus up PROFILE; a plexus of another user is not visible")
    return found


def _ago(since: Any) -> str:
    if not isinstance(since, int | float):
        return "-"
    seconds = max(0, int(time.time() - since))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run_status(args: argparse.Namespace) -> int:
    snapshots = _snapshots(getattr(args, "profile", None))
    if getattr(args, "json", False):
        print(json.dumps(snapshots[0] if getattr(args, "profile", None) else snapshots))
        return 0
    for snapshot in snapshots:
        print(f"{snapshot['profile']} ({snapshot['role']}, pid {snapshot['pid']}, up {_ago(snapshot['started'])})"
              + (f": {snapshot['state']}" if snapshot.get("state") else ""))
        for peer in snapshot["peers"]:
            payload = peer.get("payload") or {}
            print(f"  peer {peer['peer']}: {peer.get('phase')} {peer.get('status')} for {_ago(peer.get('since'))}"
                  f", path {peer.get('path') or '-'}, local {peer.get('local') or '-'}, public "
                  f"{peer.get('public') or '-'}, peer {peer.get('peer_endpoint') or '-'}"
                  + (f", relayed {peer['relayed']}" if peer.get("relayed") else "")
                  + f", restarts {peer.get('restarts', 0)}"
                  + (f", payload pid {payload.get('pid')} {payload.get('state')}" if payload else "")
                  + (f", last error: {peer['last_error']}" if peer.get("last_error") else ""))
    return 0
