"""Turn a validated profile document into the frozen ``Profile`` dataclasses (absolute paths, seconds)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from plexus.profile.document import Document
from plexus.profile.durations import parse_duration
from plexus.profile.fields import resolve_path
from plexus.profile.model import (
    Authentication,
    DhtRendezvous,
    EmailRendezvous,
    Endpoint,
    Host,
    ImapServer,
    MailServer,
    Payload,
    Peer,
    Profile,
    Punch,
    Relay,
    Rendezvous,
    SecretRef,
    Stun,
    TurnServer,
)
from plexus.profile.problems import FieldPath

_DEFAULT_PORTS = {("smtp", "implicit"): 465, ("smtp", "starttls"): 587,
                  ("imap", "implicit"): 993, ("imap", "starttls"): 143}


def build_profile(document: Document, warnings: tuple[str, ...]) -> Profile:
    data = document.data

    def path(where: FieldPath, text: str | None) -> Path | None:
        return None if text is None else resolve_path(document, where, text).resolve()

    def seconds(section: dict[str, Any], key: str, default: float) -> float:
        return parse_duration(section[key]) if key in section else default

    host = Host(id=data["host"]["id"], address=data["host"].get("address"))
    peers = tuple(
        Peer(id=p["id"], address=p.get("address"),
             certificate=path(("peers", i, "certificate"), p.get("certificate")), vars=dict(p.get("vars", {})),
             psk=_secret(document, ("peers", i, "psk"), p["psk"]) if "psk" in p else None)
        for i, p in enumerate(data["peers"]))
    rv = data["rendezvous"]
    smime = rv.get("smime", {})
    authentication = Authentication(
        method=rv["authentication"],
        certificate=path(("rendezvous", "smime", "certificate"), smime.get("certificate")),
        key=path(("rendezvous", "smime", "key"), smime.get("key")),
        ca=path(("rendezvous", "smime", "ca"), smime.get("ca")),
        psk=_secret(document, ("rendezvous", "psk"), rv["psk"]) if "psk" in rv else None)
    email = None
    if "email" in rv:
        mail = rv["email"]
        smtp, imap = mail["smtp"], mail["imap"]
        smtp_tls, imap_tls = smtp.get("tls", "implicit"), imap.get("tls", "implicit")
        email = EmailRendezvous(
            smtp=MailServer(smtp["host"], smtp.get("port", _DEFAULT_PORTS["smtp", smtp_tls]), smtp_tls),
            imap=ImapServer(imap["host"], imap.get("port", _DEFAULT_PORTS["imap", imap_tls]), imap_tls,
                            idle=imap.get("idle", True), poll=seconds(imap, "poll", 5.0)),
            login=mail.get("login") or host.address or "",
            password=_secret(document, ("rendezvous", "email", "password"), mail["password"]),
            ca=path(("rendezvous", "email", "ca"), mail.get("ca")),
            folder=mail.get("folder", "INBOX"))
    dht = None
    if "dht" in rv:
        d = rv["dht"]
        dht = DhtRendezvous(bootstrap=tuple(Endpoint.parse(e) for e in d["bootstrap"]), port=d.get("port", 0),
                            network=d.get("network", 0), keys=path(("rendezvous", "dht", "keys"), d.get("keys")),
                            app=d.get("app", "plexus"))
    rendezvous = Rendezvous(authentication=authentication, email=email, dht=dht,
                            timeout=seconds(rv, "timeout", 60.0), max_age=seconds(rv, "max_age", 120.0),
                            skew=seconds(rv, "skew", 120.0))
    st = data["stun"]
    stun = Stun(servers=tuple(Endpoint.parse(e) for e in st["servers"]),
                bind=Endpoint.parse(st["bind"]) if "bind" in st else Endpoint("0.0.0.0", 0),
                timeout=seconds(st, "timeout", 3.0), rto=seconds(st, "rto", 0.1))
    pu = data.get("punch", {})
    punch = Punch(hops=pu.get("hops", 7), timeout=seconds(pu, "timeout", 30.0),
                  interval=seconds(pu, "interval", 0.05))
    relay = _relay(document, data.get("relay"), path)
    pl = data["payload"]
    template = pl["template"]
    if "/" in template or template.startswith("."):  # a path: relative to the file that wrote it
        template = str(resolve_path(document, ("payload", "template"), template).resolve())
    payload = Payload(template=template, vars=dict(pl.get("vars", {})), restart=pl.get("restart", "never"),
                      max_restarts=pl.get("max_restarts", 10), restart_delay=seconds(pl, "restart_delay", 1.0))
    return Profile(name=_name(document.path), host=host, role=data["role"], peers=peers, rendezvous=rendezvous,
                   stun=stun, payload=payload, punch=punch, relay=relay, version=data.get("version", 1),
                   path=document.path.resolve(), warnings=warnings)


def _relay(document: Document, section: dict[str, Any] | None,
           path: Callable[[FieldPath, str | None], Path | None]) -> Relay:
    if section is None:
        return Relay()  # no relay of ours; the peer's may still be used
    servers = []
    for index, server in enumerate(section.get("servers", [])):
        where = ("relay", "servers", index)
        host, port, transport = TurnServer.parse_url(server["url"])
        servers.append(TurnServer(
            url=server["url"], host=host, port=port, transport=transport, username=server.get("username"),
            password=_secret(document, (*where, "password"), server["password"]) if "password" in server else None,
            secret=_secret(document, (*where, "secret"), server["secret"]) if "secret" in server else None,
            ca=path((*where, "ca"), server.get("ca"))))
    lifetime = parse_duration(section["lifetime"]) if "lifetime" in section else 600.0
    return Relay(servers=tuple(servers), policy=section.get("policy", "fallback"), lifetime=lifetime)


def _secret(document: Document, where: FieldPath, value: str | dict[str, Any]) -> SecretRef:
    if isinstance(value, str):
        return SecretRef("inline", value)
    if "env" in value:
        return SecretRef("env", value["env"])
    if "file" in value:
        return SecretRef("file", str(resolve_path(document, (*where, "file"), value["file"]).resolve()))
    return SecretRef("command", tuple(value["command"]))


def _name(path: Path) -> str:
    return path.name.removesuffix(".yaml").removesuffix(".yml") if path.suffix in (".yaml", ".yml") \
        else path.name
