"""The `plexus` command: a thin layer over the library. Every piece of command-line code (argument parsing, the
live view, printing, signals) lives in this package, one module per command, and a command's module is imported
only when that command runs, so that startup stays fast.

A handler is ``run(args: argparse.Namespace) -> int``. PlexusError becomes one line on stderr and its exit code;
no input ever produces a traceback (use -v to see one for a bug).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from plexus import __version__

# subcommand -> "module:function"
HANDLERS = {
    "validate": "plexus.cli.profile:run_validate",
    "render": "plexus.cli.render:run_render",
    "list": "plexus.cli.profile:run_list",
    "schema": "plexus.cli.profile:run_schema",
    "init": "plexus.cli.init:run_init",
    "nat": "plexus.cli.nat:run_nat",
    "doctor": "plexus.cli.doctor:run_doctor",
    "up": "plexus.cli.up:run_up",
    "keygen": "plexus.cli.keygen:run_keygen",
    "lab": "plexus.cli.lab:run_lab",
    "service": "plexus.cli.service:run_service",
    "status": "plexus.cli.status:run_status",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plexus", description="Connect two machines behind NAT: STUN, a mailbox rendezvous, a UDP hole "
        "punch, then launch openvpn, wireguard, socat or your own program on the punched port.")
    parser.add_argument("--version", action="version", version=f"plexus {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check profiles; every problem as file:line:col: field: what (fix)")
    p.add_argument("profiles", nargs="*", metavar="PROFILE", help="names or paths (default: all found)")
    p.add_argument("--json", action="store_true", help="machine-readable results")

    p = sub.add_parser("render", help="dry run: show the argv and files the payload would get")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--peer", required=True, metavar="IP:PORT", help="the peer's public endpoint to assume")
    p.add_argument("--peer-id", metavar="ID", help="which configured peer (default: the first)")
    p.add_argument("--as-peer-values", nargs="*", default=[], metavar="K=V",
                   help="values the peer would export in its offer (e.g. fingerprint=AA:BB:..)")
    p.add_argument("--show-secrets", action="store_true", help="do not mask secrets in the output")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("list", help="profiles found on the search path: role, peers, payload")
    p.add_argument("--json", action="store_true")

    sub.add_parser("schema", help="print the profile JSON Schema")

    p = sub.add_parser("init", help="write a commented starter profile")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--dir", default=None, help="where to write it (default ./profiles)")
    p.add_argument("--host-id"), p.add_argument("--host-address")
    p.add_argument("--peer-id"), p.add_argument("--peer-address")
    p.add_argument("--role", choices=["accept", "initiate"])
    p.add_argument("--template", default=None, help="payload template (openvpn, wireguard, socat, exec)")
    p.add_argument("--smtp"), p.add_argument("--imap"), p.add_argument("--login")
    p.add_argument("--stun", action="append", help="STUN server host:port (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--no-input", action="store_true", help="never prompt; use flags and defaults")

    p = sub.add_parser("nat", help="discover the public endpoint and NAT behaviour with STUN")
    p.add_argument("profile", nargs="?", metavar="PROFILE")
    p.add_argument("--server", action="append", metavar="HOST:PORT", help="STUN server (repeatable)")
    p.add_argument("--bind", metavar="IP:PORT", help="local endpoint (default: the profile's, else 0.0.0.0:0)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("doctor", help="check everything short of a real connection")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("up", help="rendezvous, punch and launch the payload (the whole pipeline)")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--peer", dest="peers", action="append", metavar="ID", help="initiate: only this peer")
    p.add_argument("--json", action="store_true", help="events as JSON lines")
    for flag, dest, meta, what in (
            ("-L", "local", "[BIND:]PORT:HOST:HOSTPORT", "forward: listen here, the peer connects to HOST:HOSTPORT"),
            ("-R", "remote", "[BIND:]PORT:HOST:HOSTPORT", "forward: the peer listens, we connect to HOST:HOSTPORT"),
            ("-D", "socks", "[BIND:]PORT", "forward: a SOCKS5 listener here; the peer connects where asked")):
        p.add_argument(flag, dest=dest, action="append", metavar=meta, help=what)

    p = sub.add_parser("status", help="the sessions of each running plexus up (like wg show)")
    p.add_argument("profile", metavar="PROFILE", nargs="?")
    p.add_argument("--json", action="store_true", help="one JSON object (a list without PROFILE)")

    p = sub.add_parser("keygen", help="create the DHT identity (key and certificate) of a profile")
    p.add_argument("profile", metavar="PROFILE")
    p.add_argument("--force", action="store_true")

    service = sub.add_parser("service", help="run plexus under systemd: the plexus@PROFILE.service unit")
    service_sub = service.add_subparsers(dest="service_command", metavar="SERVICE_COMMAND")
    p = service_sub.add_parser("install", help="write plexus@.service; print (or run) the systemctl line")
    p.add_argument("name", metavar="PROFILE", help="the profile the instance plexus@PROFILE runs")
    p.add_argument("--user", action="store_true", help="a user unit (~/.config/systemd/user), not a system one")
    p.add_argument("--root", metavar="DIR", help="install below this directory (an image being built)")
    p.add_argument("--dry-run", action="store_true", help="print what would be written where; write nothing")
    p.add_argument("--enable", action="store_true", help="also run systemctl daemon-reload, enable --now")
    p.add_argument("--exec", dest="exec_path", metavar="PATH", help="the plexus program for ExecStart= "
                   "(default: /usr/bin/env plexus)")
    p.add_argument("--force", action="store_true", help="replace a unit file that differs")

    lab = sub.add_parser("lab", help="the network lab: two NATed sites, STUN and mail servers, in namespaces")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="LAB_COMMAND")
    p = lab_sub.add_parser("up", help="build the lab")
    for site in "abc":
        p.add_argument(f"--nat-{site}", choices=["eim", "eim-bare", "eif", "symmetric", "double", "none"], default=None,
                       help=f"NAT kind of site {site}")
    p.add_argument("--loss", type=float, default=None, metavar="PCT",
                   help="packet loss on the NATs' outside links (0; applied to a running lab too)")
    p.add_argument("--delay", type=float, default=None, metavar="MS",
                   help="delay on the NATs' outside links (0; applied to a running lab too)")
    p.add_argument("--path-length", type=int, default=None, metavar="N", help="routers between the NATs (3)")
    p.add_argument("--force", action="store_true", help="rebuild an existing lab")
    lab_sub.add_parser("down", help="stop every lab process and delete its namespaces")
    p = lab_sub.add_parser("status", help="show the lab")
    p.add_argument("--json", action="store_true")
    p = lab_sub.add_parser("exec", help="run a command in a site's host namespace with its environment")
    p.add_argument("--user", metavar="NAME", default=None,
                   help="as this normal user (no capabilities; HOME and PLEXUS_STATE_DIR of its own), e.g. plexus-lab")
    p.add_argument("site", choices=["a", "b", "c", "srv"])
    p.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p = lab_sub.add_parser("demo", help="lab up, plexus up on two sites, ping across the tunnel, lab down")
    p.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    p.add_argument("--template", default="openvpn")
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.WARNING if verbose == 0 else logging.INFO \
        if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:  # the mail libraries' own chatter ("ignored untagged response") is for -vv only
        for library in ("aioimaplib", "aiosmtplib"):
            logging.getLogger(library).setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    module_name, _, function_name = HANDLERS[args.command].partition(":")
    from plexus.errors import PlexusError

    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        return int(handler(args))
    except PlexusError as error:
        print(f"plexus: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("plexus: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141
    except Exception as error:  # a bug: one line, and the traceback only when asked for
        if args.verbose >= 2:
            raise
        print(f"plexus: internal error: {type(error).__name__}: {error} (run with -vv for details)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
