"""Checks the schema cannot express: unique peer ids, what each authentication method needs, durations,
endpoints, referenced files, certificates and the payload template. Each check looks only at values of the
right type, so that a value the schema already rejected gives one problem, not two."""

from __future__ import annotations

import contextlib
import re

from plexus.profile.document import Document
from plexus.profile.durations import parse_duration
from plexus.profile.fields import get, peers, secret_paths
from plexus.profile.files import check_files
from plexus.profile.problems import FieldPath
from plexus.profile.templates import check_template

DURATIONS: tuple[tuple[FieldPath, bool], ...] = (  # path, may be zero
    (("rendezvous", "timeout"), False), (("rendezvous", "max_age"), False), (("rendezvous", "skew"), True),
    (("rendezvous", "email", "imap", "poll"), False), (("stun", "timeout"), False), (("stun", "rto"), False),
    (("punch", "timeout"), False), (("punch", "interval"), False), (("payload", "restart_delay"), True),
    (("relay", "lifetime"), False),
)
_TURN_URL = re.compile(r"^turns?:(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]?]+)(:[0-9]{1,5})?(\?transport=(udp|tcp))?$")  # schema
_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}$")  # as in the schema


def check_all(document: Document, *, base: bool = False) -> None:
    check_ids(document)
    check_durations(document)
    check_endpoints(document)
    check_secrets(document)
    if not base:
        check_authentication(document)
        check_rendezvous(document)
        check_relay(document)
    check_files(document)
    check_template(document, base=base)


def check_ids(document: Document) -> None:
    data = document.data
    host_id = get(data, ("host", "id"), str)
    first_seen: dict[str, int] = {}
    for index, peer in peers(data):
        peer_id = peer.get("id")
        if not isinstance(peer_id, str):
            continue
        if peer_id == host_id:
            document.problem(("peers", index, "id"), f"peer id '{peer_id}' is our own host.id",
                             "a peer is another machine; give it its own id")
        elif peer_id in first_seen:
            document.problem(("peers", index, "id"), f"duplicate peer id '{peer_id}'",
                             f"peers[{first_seen[peer_id]}] has it already; ids must be unique")
        else:
            first_seen[peer_id] = index


def check_durations(document: Document) -> None:
    for path, may_be_zero in DURATIONS:
        value = get(document.data, path, (str, int, float))
        if value is None or isinstance(value, bool):
            continue
        try:
            seconds = parse_duration(value)
        except ValueError:
            continue  # the schema's pattern already said so
        if seconds == 0 and not may_be_zero:
            document.problem(path, "must be longer than 0", "e.g. 30s")


def check_endpoints(document: Document) -> None:
    from plexus.profile.model import Endpoint

    data = document.data
    single: list[tuple[FieldPath, str]] = []
    for list_path in (("stun", "servers"), ("rendezvous", "dht", "bootstrap")):
        for index, item in enumerate(get(data, list_path, list) or []):
            if isinstance(item, str):
                single.append(((*list_path, index), item))
    bind = get(data, ("stun", "bind"), str)
    if bind is not None:
        single.append((("stun", "bind"), bind))
    for path, text in single:
        if not _ENDPOINT.match(text):
            continue  # the schema's pattern said so already
        try:
            endpoint = Endpoint.parse(text)
        except ValueError as error:
            document.problem(path, str(error).replace(repr(text) + ": ", ""))
            continue
        if endpoint.port == 0 and path != ("stun", "bind"):
            document.problem(path, "port 0 is not a server port", "STUN listens on 3478")
        if path == ("stun", "bind") and endpoint.port != 0 and get(data, ("role",), str) == "accept" \
                and len(peers(data)) > 1:
            document.problem(path, f"a fixed port serves one session at a time: while one of the "
                             f"{len(peers(data))} peers is connected, the others are refused as busy",
                             "use port 0 (a fresh port per session) unless a firewall needs this one",
                             severity="warning")


def check_secrets(document: Document) -> None:
    for path in secret_paths(document.data):
        value = get(document.data, path)
        if isinstance(value, str) and value:
            document.problem(path, "the secret is written inline in the profile",
                             "use {env: NAME}, {file: path} or {command: [argv...]}", severity="warning")


def check_authentication(document: Document) -> None:
    data = document.data
    method = get(data, ("rendezvous", "authentication"), str)
    if method == "none":
        document.problem(("rendezvous", "authentication"), "offers are neither signed nor encrypted",
                         "anyone who can send mail to the mailbox can steer the connection; use smime or psk",
                         severity="warning")
    elif method == "psk":
        _check_psk(document)
    elif method == "smime":
        for name in ("certificate", "key"):
            if get(data, ("rendezvous", "smime", name)) is None:
                document.problem(("rendezvous", "smime", name), f"missing: authentication smime needs our {name}",
                                 f"add smime: {{{name}: certs/{'me.crt' if name == 'certificate' else 'me.key'}}}")
        if get(data, ("rendezvous", "smime", "ca")) is None:
            for index, peer in peers(data):
                if "certificate" not in peer:
                    document.problem(("peers", index, "certificate"),
                                     "missing: authentication smime needs the peer's certificate",
                                     "add certificate: certs/PEER.crt, or rendezvous.smime.ca")
        elif get(data, ("role",), str) == "initiate":
            for index, peer in peers(data):
                if "certificate" not in peer:
                    document.problem(("peers", index, "certificate"),
                                     "missing: an initiator must encrypt its invite to the peer's certificate "
                                     "(the CA alone only verifies answers)", "add certificate: certs/PEER.crt")


def _check_psk(document: Document) -> None:
    """Every peer needs a key (its own or the profile's); one key serving several peers lets each of them pose
    as the others, so that is worth a warning."""
    data = document.data
    shared = [index for index, peer in peers(data) if "psk" not in peer]
    if not shared:
        return
    if get(data, ("rendezvous", "psk")) is None:
        document.problem(("peers", shared[0], "psk") if len(peers(data)) > 1 else ("rendezvous", "psk"),
                         "missing: authentication psk needs the pre-shared key",
                         "add psk: {env: PLEXUS_PSK} (to rendezvous, or to each peer)")
    elif len(shared) > 1:
        document.problem(("rendezvous", "psk"), f"one pre-shared key serves {len(shared)} peers: each of them "
                         "can pose as the others", "give each peer its own key: peers[].psk",
                         severity="warning")


def check_rendezvous(document: Document) -> None:
    data = document.data
    rendezvous = get(data, ("rendezvous",), dict)
    if rendezvous is None:
        return
    if "email" not in rendezvous and "dht" not in rendezvous:
        document.problem(("rendezvous",), "needs email or dht: how the peers exchange offers",
                         "add email: {smtp: ..., imap: ..., password: ...}")
    if get(rendezvous, ("email",), dict) is None:
        return
    if get(data, ("host", "address"), str) is None:
        document.problem(("host", "address"), "missing: the email rendezvous needs our mailbox address",
                         "add address: me@example.org")
    for index, peer in peers(data):
        if "address" not in peer:
            document.problem(("peers", index, "address"), "missing: the email rendezvous needs the peer's "
                             "mailbox address", "add address: peer@example.org")




def check_relay(document: Document) -> None:
    from plexus.profile.model import TurnServer

    relay = get(document.data, ("relay",), dict)
    if relay is None:
        return
    servers = get(relay, ("servers",), list)
    if not servers and relay.get("policy", "fallback") != "never":
        document.problem(("relay",), "names no TURN server: add relay.servers, or set policy: never",
                         "servers: [{url: turn:turn.example.org:3478, username: ..., password: {env: ...}}]")
    for index, server in enumerate(servers or []):
        if not isinstance(server, dict):
            continue
        where: FieldPath = ("relay", "servers", index)
        url = get(server, ("url",), str)
        if url is not None and _TURN_URL.match(url):
            try:
                TurnServer.parse_url(url)
            except ValueError as error:
                document.problem((*where, "url"), str(error))
        long_term = "username" in server or "password" in server
        if long_term and "secret" in server:
            document.problem(where, "gives both long-term credentials (username, password) and a REST secret",
                             "keep one: username + password, or secret")
        elif "secret" not in server and not ("username" in server and "password" in server):
            missing = "password" if "username" in server else "username"
            document.problem((*where, missing) if long_term else where,
                             "missing: the TURN server needs a username and a password, or a REST secret",
                             "add username: NAME and password: {env: PLEXUS_TURN_PASSWORD}")
    lifetime = get(relay, ("lifetime",), str)
    if lifetime is not None:
        with contextlib.suppress(ValueError):
            if not 60 <= parse_duration(lifetime) <= 3600:
                document.problem(("relay", "lifetime"), "must be between 1m and 1h (TURN servers cap it at 1h)")
