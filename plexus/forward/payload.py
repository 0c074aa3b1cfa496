"""The ``forward`` template as the launcher runs it: a ``ForwardSession`` in plexus's own process, on the punched
port (``SessionContext.inner``, just closed by the punch, so the NAT mapping stays warm) toward the peer. The
initiator is the QUIC client, the acceptor the QUIC server; the peer's certificate fingerprint comes from its
authenticated offer (``exports.fingerprint``), ours from this session's ``quic-cert`` key.

Events: ``launch`` start/ok/fail as for any payload, ``payload info ready`` once QUIC is up, one ``payload info``
line per forward event (listening, connection open/closed with bytes, a refused target), and ``payload`` ok/fail
when the session ends (exit 1 when the connection died: the restart policy then starts a new rendezvous and
punch). The local listeners belong to the peer, not to one session: across a restart they stay bound, so local
clients are held briefly or refused, then work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from plexus.errors import LaunchError
from plexus.events import Event, Reporter
from plexus.forward.certs import Identity
from plexus.forward.listeners import Listeners
from plexus.forward.session import ForwardSession
from plexus.forward.spec import LocalForward, RemoteForward, Socks, Target
from plexus.launch.template import Prepared, SessionContext, Template

_LISTENERS: dict[str, Listeners] = {}  # peer id -> its local listeners, kept across the sessions of this process


def _specs(vars: dict[str, Any], name: str, parse: Callable[[str], Any]) -> list[Any]:
    items = vars.get(name) or []
    if not isinstance(items, list):
        raise LaunchError(f"forward: payload var {name} must be a list")
    parsed = []
    for item in items:
        try:
            parsed.append(parse(str(item)))
        except ValueError as error:
            raise LaunchError(f"forward: payload var {name}: {error}",
                              hint="e.g. local: ['2222:127.0.0.1:22'], expose: ['127.0.0.1:22']") from None
    return parsed


def _identity(prepared: Prepared) -> Identity:
    material = prepared.keys.get("quic")
    if not material:
        raise LaunchError("forward: the template declares no quic-cert key (keys: {quic: quic-cert})")
    certificate = x509.load_pem_x509_certificate(material["cert"].encode())
    key = serialization.load_pem_private_key(material["key"].encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LaunchError("forward: the quic-cert key is not an EC key")
    return Identity(certificate, key)


def _message(kind: str, data: dict[str, Any]) -> str:
    forward = data.get("forward", "")
    if kind in ("listening", "serving"):
        return f"{forward}: listening on {data.get('address')}" + (" (kept from before)" if data.get("adopted") else "")
    if kind == "open":
        return f"{forward}: connection {data.get('id')} to {data.get('target')} open"
    if kind == "close":
        return f"{forward}: connection {data.get('id')} closed ({data.get('sent', 0)} bytes out, " \
               f"{data.get('received', 0)} in)"
    if kind == "refused":
        return f"refused the peer's request for {data.get('target')}: {data.get('reason')}"
    if kind == "fingerprint-mismatch":
        return "the peer's QUIC certificate does not match the fingerprint in its offer: closed, no stream"
    details = ", ".join(f"{k} {v}" for k, v in data.items())
    return f"{kind}: {details}" if details else kind


def build_session(template: Template, prepared: Prepared, context: SessionContext,
                  report: Callable[[str, dict[str, Any]], None]) -> ForwardSession:
    vars = context.vars
    fingerprint = context.peer_values.get("fingerprint")
    if not fingerprint:
        raise LaunchError(f"forward: {context.peer_id}'s offer carries no certificate fingerprint",
                          hint="both sides must run the forward template")
    idle, ping = int(vars.get("idle_timeout", 30)), int(vars.get("ping_interval", 10))
    return ForwardSession(
        bind=context.inner, peer=context.peer, client=context.role == "initiate", identity=_identity(prepared),
        peer_fingerprint=fingerprint, local=_specs(vars, "local", LocalForward.parse),
        remote=_specs(vars, "remote", RemoteForward.parse), socks=_specs(vars, "socks", Socks.parse),
        expose=_specs(vars, "expose", Target.parse), report=report,
        listeners=_LISTENERS.setdefault(context.peer_id, Listeners()), idle_timeout=idle, ping_interval=ping)


async def run_forward_payload(template: Template, prepared: Prepared, context: SessionContext,
                              report: Reporter) -> int:
    peer = context.peer_id
    started = time.monotonic()
    report(Event("launch", "start", template.name, peer))

    def forward_report(kind: str, data: dict[str, Any]) -> None:
        if kind == "connected":
            report(Event("payload", "info", "ready", peer, data={"pid": os.getpid(), **data}))
            return
        warn = kind in ("refused", "fingerprint-mismatch", "remote-failed", "serve-failed", "unreachable",
                        "socks-failed")
        report(Event("payload", "warn" if warn else "info", _message(kind, data), peer,
                     data={"forward_event": kind, **data}))

    try:
        session = build_session(template, prepared, context, forward_report)
        address = await session.start()
    except LaunchError as error:
        report(Event("launch", "fail", str(error), peer, time.monotonic() - started))
        raise
    report(Event("launch", "ok", f"{template.name} (in plexus, pid {os.getpid()}) on UDP {address[0]}:{address[1]}",
                 peer, time.monotonic() - started, {"pid": os.getpid()}))
    code, reason = 0, ""
    try:
        await session.wait()
    except LaunchError as error:
        code, reason = 1, f" ({error.message})"
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await session.close()
        raise
    report(Event("payload", "ok" if code == 0 else "fail", f"exited with {code}{reason}", peer,
                 time.monotonic() - started, {"exit_code": code, "forwards": _stats(session)}))
    return code


def _stats(session: ForwardSession) -> dict[str, dict[str, int]]:
    return {name: dict(vars(stats)) for name, stats in session.stats().items()}
