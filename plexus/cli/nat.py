"""``plexus nat [PROFILE] [--server HOST:PORT]... [--bind IP:PORT] [--json]``: the NAT report.

STUN settings come from the profile (``plexus.profile.load``); ``--server`` replaces its servers and ``--bind``
its local endpoint. Without a profile and without ``--server``, the one profile on the profile search path
(``$PLEXUS_PROFILE_PATH``, else ./profiles, ...) is used if there is exactly one STUN setup among them — so
``plexus lab exec a -- plexus nat`` works in the lab.

Exit status: 0 when hole punching is possible from here; 3 (``NatError.exit_code``) when it is not — the report
is still printed in full — and also when STUN itself fails (then one line on stderr and no report). ``--json``
prints the report as one JSON object (``punchable`` tells the two exit-3 cases apart: it is absent on failure).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json

from plexus.errors import NatError, PlexusError
from plexus.nat.behaviour import NatReport, full_report
from plexus.nat.mapping import STILL_WORKS_MARK
from plexus.profile.model import Endpoint, Stun

DEFAULT_STUN_PORT = 3478


def run_nat(args: argparse.Namespace) -> int:
    stun = _stun_settings(args.profile, args.server or [], args.bind)
    report = asyncio.run(full_report(stun))
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        _print_table(report)
    return 0 if report.punchable else NatError.exit_code


def _stun_settings(profile_name: str | None, servers: list[str], bind: str | None) -> Stun:
    base: Stun | None = None
    if profile_name:
        from plexus.profile import load

        base = load(profile_name).stun
    elif not servers:
        base = _the_only_stun_setup()
    endpoints = tuple(_endpoint("--server", text, DEFAULT_STUN_PORT) for text in servers)
    local = _endpoint("--bind", bind, 0, numeric=True) if bind else None
    if base is None:
        base = Stun(servers=endpoints)
    return Stun(servers=endpoints or base.servers, bind=local or base.bind, timeout=base.timeout, rto=base.rto)


def _endpoint(option: str, text: str, default_port: int, *, numeric: bool = False) -> Endpoint:
    hint = "write IP:PORT, e.g. 0.0.0.0:40000" if numeric else "write HOST:PORT, e.g. 198.18.0.10:3478"
    try:
        endpoint = Endpoint.parse(text, default_port=default_port)
    except ValueError as error:
        raise NatError(f"{option}: {error}", hint=hint) from error
    if numeric:
        try:
            ipaddress.ip_address(endpoint.host)  # never resolve a name here: bind takes a local address
        except ValueError:
            raise NatError(f"{option}: {endpoint.host!r} is not an IP address", hint=hint) from None
    return endpoint


def _the_only_stun_setup() -> Stun:
    """The STUN settings shared by every profile on the search path (bases and broken ones are skipped)."""
    from plexus.profile import find_profiles, load

    setups: dict[Stun, list[str]] = {}
    for path in find_profiles():
        try:
            stun = load(path).stun
        except PlexusError:
            continue
        setups.setdefault(stun, []).append(path.stem)
    if len(setups) == 1:
        return next(iter(setups))
    if not setups:
        raise NatError("no profile found to take the STUN servers from",
                       hint="give PROFILE or --server HOST:PORT")
    names = ", ".join(name for group in setups.values() for name in group)
    raise NatError(f"profiles {names} use different STUN settings", hint="name one PROFILE, or give --server")


def _print_table(report: NatReport) -> None:
    from rich.console import Console
    from rich.table import Table

    def ms(*names: str) -> str:
        return " + ".join(f"{report.timings[name] * 1000:.1f} ms" for name in names if name in report.timings)

    def yes_no(value: bool | None, none: str = "not applicable") -> str:
        return none if value is None else "yes" if value else "no"

    data = report.to_json()
    reason, _, still_works = report.reason.partition(STILL_WORKS_MARK)
    verdict = "[green]possible[/]" if report.punchable else "[red]not possible[/]"
    table = Table(title=f"NAT report (STUN server {report.server})", show_header=True, header_style="bold")
    table.add_column("test")
    table.add_column("result", overflow="fold")
    table.add_column("time", justify="right")
    table.add_row("local endpoint", data["local"], "")
    table.add_row("public endpoint", data["public"], ms("binding"))
    table.add_row("mapping", report.mapping if report.mapping != "none" else "none (no NAT)", ms("mapping"))
    table.add_row("filtering", report.filtering or "not tested (the server has no alternate address)",
                  ms("filtering"))
    table.add_row("port preserved", yes_no(report.port_preserved), "")
    table.add_row("hairpin", yes_no(report.hairpin, "not applicable (no NAT)"), ms("hairpin"))
    table.add_row("hole punching", f"{verdict}, because {reason}", ms("total"))
    if still_works:
        table.add_row("what still works", still_works[:1].upper() + still_works[1:], "")
    paths = "\n".join(f"to {peer}: {path}" for peer, path in data["paths"].items())
    table.add_row("plexus up", paths, "")
    Console().print(table)
