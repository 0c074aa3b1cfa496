"""``plexus init NAME``: write a commented starter profile from flags, asking for what is missing (unless
``--no-input`` or stdin is not a terminal), then validate it and say what the user still has to create."""

from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path
from typing import Any

from plexus.errors import ProfileError

# sensible values for the vars of the built-in templates; the accepting side takes the other tunnel address
KNOWN_VARS: dict[str, tuple[str, str]] = {  # name -> (initiate, accept)
    "tunnel": ("198.19.0.1", "198.19.0.2"),
    "remote_tunnel": ("198.19.0.2", "198.19.0.1"),
    "listen_port": ("5000", "5000"),
    "app_port": ("5001", "5001"),
    "command": ("/usr/local/bin/on-connect", "/usr/local/bin/on-connect"),
}
PER_PEER_VARS = {"remote_tunnel"}


def run_init(args: argparse.Namespace) -> int:
    from plexus.resources import schema_path

    directory = Path(args.dir) if args.dir else Path("profiles")
    name = args.name.removesuffix(".yaml").removesuffix(".yml")
    if not name or "/" in name or name.startswith("."):
        raise ProfileError(f"profile name {args.name!r}: give a plain name", hint="e.g. plexus init laptop")
    target = directory / f"{name}.yaml"
    if target.exists() and not args.force:
        raise ProfileError(f"{target} exists", hint="--force overwrites it")
    ask = _asker(interactive=not args.no_input and sys.stdin.isatty())
    host_id = args.host_id or ask("our id (how the peer names this machine)", socket.gethostname().split(".")[0]
                                  or name)
    host_address = args.host_address or ask("our mailbox address", f"{host_id}@example.org")
    role = args.role or ask("role: initiate (connect now) or accept (wait for peers)", "initiate",
                            ["initiate", "accept"])
    peer_id = args.peer_id or ask("the peer's id", "home-server" if role == "initiate" else "laptop")
    peer_address = args.peer_address or ask("the peer's mailbox address", f"{peer_id}@example.org")
    template = args.template or ask("payload template", "openvpn", ["openvpn", "wireguard", "socat", "exec"])
    smtp = args.smtp or ask("SMTP server host[:port]", "smtp.example.org:465")
    imap = args.imap or ask("IMAP server host[:port]", "imap.example.org:993")
    login = args.login or ask("mailbox login", host_address)
    stun = args.stun or [ask("STUN server host:port", "stun.example.org:3478")]
    try:
        needs = _needs(template, directory)
    except ProfileError:
        raise
    except Exception as error:  # LaunchError: unknown template
        raise ProfileError(f"--template {template}: {error}") from error
    side = 0 if role == "initiate" else 1
    values = {need: KNOWN_VARS[need][side] if need in KNOWN_VARS else ask(f"template var {need}", "CHANGE-ME")
              for need in needs}
    text = starter_text(
        schema=str(schema_path()), host_id=host_id, host_address=host_address, role=role, peer_id=peer_id,
        peer_address=peer_address, template=template, smtp=_server(smtp, 465, 587), imap=_server(imap, 993, 143),
        login=login, stun=stun, common={k: v for k, v in values.items() if k not in PER_PEER_VARS},
        per_peer={k: v for k, v in values.items() if k in PER_PEER_VARS})
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return _report(target)


def _asker(interactive: bool) -> Any:
    def ask(question: str, default: str, choices: list[str] | None = None) -> str:
        if not interactive:
            return default
        from rich.prompt import Prompt

        return str(Prompt.ask(question, default=default, choices=choices))

    return ask


def _needs(template: str, directory: Path) -> list[str]:
    from plexus.profile.templates import template_needs

    return template_needs(template, directory.resolve())


def _server(text: str, implicit_port: int, starttls_port: int) -> dict[str, Any]:
    host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    port = int(port_text) if port_text.isdigit() else implicit_port
    return {"host": host, "port": port, "tls": "starttls" if port == starttls_port else "implicit"}


def _flow(mapping: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in mapping.items()) + "}"


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@-]*$")


def _scalar(value: Any) -> str:
    """``value`` as a YAML scalar: plain where that reads back as the same text or number, else quoted."""
    import json

    if not isinstance(value, str):
        return str(value)
    if _PLAIN.match(value) and value.lower() not in ("yes", "no", "on", "off", "true", "false", "null"):
        return value
    return json.dumps(value)


def starter_text(*, schema: str, host_id: str, host_address: str, role: str, peer_id: str, peer_address: str,
                 template: str, smtp: dict[str, Any], imap: dict[str, Any], login: str, stun: list[str],
                 common: dict[str, str], per_peer: dict[str, str]) -> str:
    import json

    peer_vars = f"\n    vars: {_flow(per_peer)}" if per_peer else ""
    text = f"""\
# yaml-language-server: $schema={schema}
# plexus profile written by `plexus init`. Reference: docs/profiles.md; check it with `plexus validate`.
version: 1

host:
  id: {_scalar(host_id)}	# our id, as the peer's profile names us
  address: {_scalar(host_address)}	# our mailbox address

role: {_scalar(role)}	# initiate = connect now; accept = wait for invitations (many peers)

peers:
  - id: {_scalar(peer_id)}
    address: {_scalar(peer_address)}
    certificate: {_scalar(f'certs/{peer_id}.crt')}	# the peer's S/MIME certificate (ask the peer for it){peer_vars}

rendezvous:
  authentication: smime	# smime | psk (then psk: {{env: PLEXUS_PSK}}) | none
  smime:
    # create them: openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj /CN={host_id}
    #   -addext subjectAltName=email:{host_address} -keyout certs/{host_id}.key -out certs/{host_id}.crt
    certificate: {_scalar(f'certs/{host_id}.crt')}	# ours: the peer needs a copy
    key: {_scalar(f'certs/{host_id}.key')}	# keep it private: chmod 600
  timeout: 60s	# how long to wait for the answer
  email:
    smtp: {_flow(smtp)}
    imap: {_flow(imap)}
    login: {_scalar(login)}
    password: {{env: PLEXUS_MAIL_PASSWORD}}	# or {{file: secrets/mail}} or {{command: [pass, show, mail]}}

stun:
  servers: {json.dumps(stun)}
  bind: "0.0.0.0:0"	# local UDP endpoint for STUN, punching and then the payload

punch:
  hops: 7	# TTL of the opening packets
  timeout: 30s

payload:
  template: {_scalar(template)}	# built-in name, your own template, or a path to a template directory
  vars: {_flow(common)}
  restart: on-failure	# never | on-failure | always
"""
    return "\n".join(_align(line) for line in text.split("\n"))


def _align(line: str, column: int = 40) -> str:
    code, tab, comment = line.partition("\t")
    return f"{code.ljust(column - 1)} {comment}" if tab else line


def _report(target: Path) -> int:
    from plexus.profile import validate

    problems = [p for p in validate(target) if p.is_error]
    missing = [p for p in problems if "does not exist" in p.message]
    others = [p for p in problems if p not in missing]
    print(f"wrote {target}")
    for problem in missing:
        print(f"  still to create: {problem}")
    for problem in others:
        print(str(problem), file=sys.stderr)
    if others:
        return 2
    print(f"next: edit it, then plexus validate {target}")
    return 0
