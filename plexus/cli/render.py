"""``plexus render``: what a session would launch, without any network traffic.

Nothing is connected, so the session's values are assumed: the peer endpoint comes from ``--peer``; our
inner endpoint is the profile's ``stun.bind`` (an unspecified address or port becomes 192.0.2.1 and 40000);
our outer (public) endpoint is 203.0.113.1 with the same port; the session secret is random. The peer's
exported values come from ``--as-peer-values``, else from a key set generated here as if by the peer.
The files are rendered into a private temporary run directory that is removed before the command returns.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any

from plexus.errors import ProfileError

ASSUMED_INNER_HOST = "192.0.2.1"  # TEST-NET-1: never a real address
ASSUMED_OUTER_HOST = "203.0.113.1"  # TEST-NET-3
ASSUMED_PORT = 40000


def run_render(args: argparse.Namespace) -> int:
    from plexus.launch.template import SessionContext, find_template, mask, prepare, render
    from plexus.profile import load
    from plexus.profile.model import Endpoint

    profile = load(args.profile)
    peer = profile.peer(args.peer_id) if args.peer_id else profile.peers[0]
    if peer is None:
        known = ", ".join(p.id for p in profile.peers)
        raise ProfileError(f"--peer-id {args.peer_id}: no such peer in {profile.name}", hint=f"peers: {known}")
    try:
        peer_endpoint = Endpoint.parse(args.peer)
    except ValueError as error:
        raise ProfileError(f"--peer: {error}", hint="e.g. --peer 198.18.0.2:40001") from error
    peer_values = _peer_values(args.as_peer_values)
    bind = profile.stun.bind
    port = bind.port or ASSUMED_PORT
    inner = (bind.host if bind.host not in ("0.0.0.0", "::", "") else ASSUMED_INNER_HOST, port)
    outer = (ASSUMED_OUTER_HOST, port)
    assert profile.path is not None
    template = find_template(profile.payload.template, profile.path.parent)
    payload_vars = profile.payload_vars(peer)
    prepared = prepare(template, payload_vars)
    assumed_peer_values = sorted(set(template.exports) - set(peer_values))
    if assumed_peer_values:  # as if the peer ran the same template
        peer_values = {**prepare(template, payload_vars).exports, **peer_values}
    context = SessionContext(inner=inner, outer=outer, peer=(peer_endpoint.host, peer_endpoint.port),
                             secret=os.urandom(32), host_id=profile.host.id, peer_id=peer.id, role=profile.role,
                             peer_values=peer_values, vars=payload_vars)
    work = Path(tempfile.mkdtemp(prefix="plexus-render-"))
    try:
        rendered = render(template, prepared, context, work / "run")
        secrets = [] if args.show_secrets else list(rendered.secrets)
        files = {name: {"path": str(path), "mode": f"{path.stat().st_mode & 0o777:04o}",
                        "content": mask(path.read_text(encoding="utf-8", errors="replace"), secrets)}
                 for name, path in rendered.files.items()}
        result: dict[str, Any] = {
            "profile": str(profile.path), "template": str(template.path), "peer_id": peer.id,
            "role": profile.role,
            "assumed": {"inner": _show(inner), "outer": _show(outer), "peer": str(peer_endpoint),
                        "secret": "random", "peer_values": assumed_peer_values},
            "argv": [mask(a, secrets) for a in rendered.argv],
            "env": {k: mask(v, secrets) for k, v in rendered.env.items()},
            "files": files, "exports": prepared.exports, "masked": not args.show_secrets,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


def _peer_values(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ProfileError(f"--as-peer-values {item!r}: write NAME=VALUE")
        values[name] = value
    return values


def _show(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.text import Text

    out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
    assumed = result["assumed"]
    out.print(Text(f"plexus render: {result['profile']} -> peer {result['peer_id']} ({result['role']}), "
                   f"template {result['template']}", style="bold"))
    out.print(f"assumed: inner {assumed['inner']}, outer {assumed['outer']}, peer {assumed['peer']}, "
              "random session secret"
              + (f", peer values generated here: {', '.join(assumed['peer_values'])}" if assumed['peer_values']
                 else ""))
    if result["exports"]:
        out.print("exports to the peer: " + ", ".join(f"{k}={v}" for k, v in result["exports"].items()))
    out.print(Text("argv: ", style="bold") + Text(shlex.join(result["argv"])))
    for name, value in result["env"].items():
        out.print(Text("env: ", style="bold") + Text(f"{name}={value}"))
    for name, file in result["files"].items():
        out.rule(Text(f"{name} (mode {file['mode']}, in the run directory)", style="bold"), align="left")
        out.print(Text(file["content"].rstrip("\n")))
    if result["files"]:
        out.rule()
    note = "secrets masked (--show-secrets shows them)" if result["masked"] else "secrets SHOWN"
    out.print(Text(f"{note}; the temporary run directory was removed", style="dim"))
