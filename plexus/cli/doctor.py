"""``plexus doctor PROFILE``: the checks of ``plexus.doctor`` as a table (or ``--json``). Exit 0 when nothing
failed (warnings allowed), 1 otherwise."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict

from plexus.doctor import Check, run_checks


def run_doctor(args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(args.profile))
    failed = any(check.status == "fail" for check in checks)
    if args.json:
        print(json.dumps({"profile": args.profile, "ok": not failed,
                          "checks": [asdict(check) for check in checks]}, indent=2))
    else:
        _print_table(checks)
    return 1 if failed else 0


def _print_table(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]", "n/a": "[dim]n/a[/]"}
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("check")
    table.add_column("")
    table.add_column("detail", overflow="fold")
    for check in checks:
        detail = check.detail + (f"  [dim]→ {check.fix}[/]" if check.fix and check.status != "ok" else "")
        table.add_row(check.name, marks[check.status], detail)
    Console().print(table)
