"""The profiles ``lab up`` writes for each site (``sites/<site>/<peer>.yaml``), in the format of
profiles/examples, and a builder for variants the tests need (psk, another template, other timeouts...).

Beside each site's tunnel profile, a forward profile (``sites/<site>/<peer>-forward.yaml``, template
``forward``, psk authentication so no S/MIME key has to be readable): bob on b accepts alice and carol and
exposes its sshd and a test HTTP server (``forward_vars``); alice and carol initiate and expose 127.0.0.1:8000
(what bob may open on their side). Profiles and their folders are readable by every user (``lab exec --user``);
they hold no secrets (those come from the environment)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml

from plexus.lab.state import LabState
from plexus.lab.topology import (
    IMAPS_PORT,
    MAIL_DOMAIN,
    MAIL_HOST,
    SITE_USERS,
    SMTPS_PORT,
    STUN_PRIMARY,
    TUNNEL_ADDRESSES,
    TURN_REST_SERVER,
    TURN_SERVER,
    Topology,
)

RelayAuth = Literal["password", "rest"]

# site -> (profile name, role, peers)
SITE_PROFILES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "a": ("bob", "initiate", ("bob",)),
    "b": ("alice", "accept", ("alice", "carol")),
    "c": ("bob", "initiate", ("bob",)),
}
FORWARD_PROFILES = {site: f"{name}-forward" for site, (name, _, _) in SITE_PROFILES.items()}
# what a peer may open on each site: b its sshd (sshd.py) and a test HTTP server; a and c a test server
FORWARD_EXPOSE = {"a": ("127.0.0.1:8000",), "b": ("127.0.0.1:22", "127.0.0.1:8080"), "c": ("127.0.0.1:8000",)}


def forward_vars(site: str) -> dict[str, Any]:
    """The ``payload.vars`` of ``site``'s forward profile: ``{"expose": [...]}``."""
    return {"expose": list(FORWARD_EXPOSE[site])}


def _schema_line() -> str:
    try:
        from plexus.resources import schema_path

        return f"# yaml-language-server: $schema={schema_path()}\n"
    except FileNotFoundError:
        return ""


def build_profile(topology: Topology, state: LabState, site: str, *, role: str, peers: tuple[str, ...],
                  authentication: str = "smime", template: str = "openvpn", relay_auth: RelayAuth = "password",
                  overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The profile document of ``site``'s user towards ``peers``; ``overrides`` are merged in last (nested
    dicts merge key by key, a value of None removes the key). The relay is the lab's long-term TURN server with
    the site user's credentials (``relay_auth="rest"``: the TURN REST server and its shared secret).
    ``template="forward"``: the payload is ``{template: forward, vars: forward_vars(site)}``, peers have no vars."""
    user = SITE_USERS[site]
    pki = state.pki
    rendezvous: dict[str, Any] = {"authentication": authentication}
    if authentication == "smime":
        rendezvous["smime"] = {"certificate": str(pki / f"{user}.crt"), "key": str(pki / f"{user}.key"),
                               "ca": str(pki / "ca.crt")}
    elif authentication == "psk":
        rendezvous["psk"] = {"env": "PLEXUS_LAB_PSK"}
    rendezvous["timeout"] = "30s"
    rendezvous["email"] = {
        "smtp": {"host": MAIL_HOST, "port": SMTPS_PORT, "tls": "implicit"},
        "imap": {"host": MAIL_HOST, "port": IMAPS_PORT, "tls": "implicit", "idle": True},
        "login": user,
        "password": {"env": "PLEXUS_MAIL_PASSWORD"},
        "ca": str(pki / "ca.crt"),
    }
    peer_entries = []
    for peer in peers:
        entry: dict[str, Any] = {"id": peer, "address": f"{peer}@{MAIL_DOMAIN}"}
        if authentication == "smime":
            entry["certificate"] = str(pki / f"{peer}.crt")
        if template != "forward":  # a tunnel's peer address; a forward has none
            entry["vars"] = {"remote_tunnel": TUNNEL_ADDRESSES[peer]}
        peer_entries.append(entry)
    payload: dict[str, Any] = {"template": template, "vars": {"tunnel": TUNNEL_ADDRESSES[user]}, "restart": "never"}
    if template == "forward":
        payload = {"template": template, "vars": forward_vars(site)}
    document: dict[str, Any] = {
        "version": 1,
        "host": {"id": user, "address": f"{user}@{MAIL_DOMAIN}"},
        "role": role,
        "peers": peer_entries,
        "rendezvous": rendezvous,
        "stun": {"servers": [f"{STUN_PRIMARY[0]}:{STUN_PRIMARY[1]}"]},
        # hops: see Topology.punch_hops (2 opens our NAT, 3 both of a double NAT; the next router drops it)
        "punch": {"hops": topology.punch_hops(site), "timeout": "20s"},
        "relay": {"policy": "fallback", "servers": [relay_server(user, relay_auth)]},
        "payload": payload,
    }
    return _merge(document, overrides or {})


def relay_server(user: str, auth: RelayAuth = "password") -> dict[str, Any]:
    """One ``relay.servers`` entry: the long-term TURN server as ``user`` (password from PLEXUS_TURN_PASSWORD),
    or the TURN REST server (secret from PLEXUS_TURN_SECRET)."""
    if auth == "rest":
        return {"url": f"turn:{TURN_REST_SERVER[0]}:{TURN_REST_SERVER[1]}", "secret": {"env": "PLEXUS_TURN_SECRET"}}
    return {"url": f"turn:{TURN_SERVER[0]}:{TURN_SERVER[1]}", "username": user,
            "password": {"env": "PLEXUS_TURN_PASSWORD"}}


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


HOPS_COMMENT = ("# hops 2: our NAT forwards the opening packet (TTL 2 -> 1), the first router behind it drops it,\n"
                "# so it opens our NAT and never reaches the peer's (any 2 <= hops <= path length + 1 would do)\n")
DOUBLE_HOPS_COMMENT = ("# hops 3: our home NAT and the carrier-grade NAT above it forward the opening packet\n"
                       "# (TTL 3 -> 1), the first router behind them drops it: it opens both, never the peer's NAT\n")
_PUNCH_LINE = re.compile(r"\npunch: \{hops: ([23]),")


def dump(document: dict[str, Any], path: Path, comment: str = "", *, double_nat: bool = False) -> Path:
    """Write ``document`` as YAML with the schema line, ``comment`` and a note on the usual ``punch.hops`` (2, or
    3 for a site behind a double NAT)."""
    text = _schema_line() + (f"# {comment}\n" if comment else "")
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=110)
    notes = {"2": HOPS_COMMENT, **({"3": DOUBLE_HOPS_COMMENT} if double_nat else {})}
    text += _PUNCH_LINE.sub(lambda m: "\n" + notes.get(m.group(1), "") + m.group(0)[1:], body, count=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o755)  # readable by the site's normal users too (whatever the umask)
    path.write_text(text)
    path.chmod(0o644)
    return path


def write_site_profiles(topology: Topology, state: LabState, sites: tuple[str, ...] = tuple(SITE_PROFILES)) -> None:
    """Each site's tunnel profile (S/MIME) and forward profile (psk)."""
    for site, (name, role, peers) in SITE_PROFILES.items():
        if site not in sites:
            continue
        comment = f"written by `plexus lab up` for lab {topology.name!r}, site {site} ({SITE_USERS[site]})"
        document = build_profile(topology, state, site, role=role, peers=peers)
        dump(document, state.sites / site / f"{name}.yaml", comment, double_nat=topology.double(site))
        document = build_profile(topology, state, site, role=role, peers=peers, authentication="psk",
                                 template="forward")
        dump(document, state.sites / site / f"{FORWARD_PROFILES[site]}.yaml", comment,
             double_nat=topology.double(site))
