"""The profile commands of the CLI: validate, list, schema (render and init have modules of their own). Thin: the
work is in the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from plexus.errors import ProfileError


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    # soft_wrap: one problem stays one line however narrow the terminal; no markup: [0] is not a tag
    return Console(stderr=stderr, soft_wrap=True, highlight=False, markup=False, emoji=False)


def run_validate(args: argparse.Namespace) -> int:
    from plexus.profile import examine, find_profile, find_profiles

    if args.profiles:
        targets: list[Path | str] = list(args.profiles)
    else:
        targets = list(find_profiles())
        if not targets:
            from plexus.profile.lookup import search_dirs

            raise ProfileError("no profiles found", hint=f"looked in {', '.join(map(str, search_dirs()))}; "
                               "name one, or plexus init NAME")
    results: list[dict[str, Any]] = []
    for target in targets:
        try:
            path = find_profile(target)
        except ProfileError as error:
            results.append({"file": str(target), "valid": False, "base": False, "error": str(error),
                            "problems": []})
            continue
        problems, base = examine(path)
        results.append({"file": str(path), "valid": not any(p.is_error for p in problems), "base": base,
                        "problems": problems})
    valid = all(result["valid"] for result in results)
    if args.json:
        for result in results:
            result["problems"] = [p.as_dict() for p in result["problems"]]
        print(json.dumps({"valid": valid, "profiles": results}, indent=2))
        return 0 if valid else 2
    _print_validation(results, quiet=args.quiet)
    return 0 if valid else 2


def _print_validation(results: list[dict[str, Any]], quiet: bool) -> None:
    lines: list[tuple[str, str, str, bool]] = []  # location, rest, style, to stderr
    styles = {"error": "red", "warning": "yellow", "note": "cyan"}
    for result in results:
        if "error" in result:
            lines.append(("", f"plexus: {result['error']}", "red", True))
        for problem in result["problems"]:
            if not (quiet and not problem.is_error):
                lines.append((_location(problem), _tail(problem), styles[problem.severity], False))
    if not quiet:
        bad = sum(not r["valid"] for r in results)
        bases = sum(bool(r["base"]) for r in results)
        note = f" ({bases} checked as base profile{'s' if bases != 1 else ''}: need not be complete)" \
            if bases else ""
        count = f"{len(results)} profile{'s' if len(results) != 1 else ''}"
        lines.append(("", f"plexus validate: {count}, {f'{bad} invalid' if bad else 'all valid'}{note}",
                      "red" if bad else "green", True))
    if not (sys.stdout.isatty() or sys.stderr.isatty()):  # no colours to show: skip importing rich
        for location, rest, _, to_stderr in lines:
            print(location + rest, file=sys.stderr if to_stderr else sys.stdout)
        return
    from rich.text import Text

    out, err = _console(), _console(stderr=True)
    for location, rest, style, to_stderr in lines:
        text = Text(location, style="bold")
        text.append(rest, style=style)
        (err if to_stderr else out).print(text)


def _location(problem: Any) -> str:
    return f"{problem.file}:{problem.line}:{problem.col}: "


def _tail(problem: Any) -> str:
    """The problem line after ``file:line:col: ``."""
    return str(problem)[len(_location(problem)):]


def run_list(args: argparse.Namespace) -> int:
    from plexus.profile import examine, find_profiles, load
    from plexus.profile.lookup import search_dirs

    rows: list[dict[str, Any]] = []
    names: set[str] = set()
    for path in find_profiles():
        name = path.stem
        row: dict[str, Any] = {"name": name, "file": str(path), "shadowed": name in names}
        names.add(name)
        problems, base = examine(path)
        errors = [p for p in problems if p.is_error]
        if errors or base:
            row.update(role="base" if base and not errors else None, peers=[], payload=None, valid=not errors,
                       error=str(errors[0]) if errors else None)
        else:
            profile = load(path)
            row.update(role=profile.role, peers=[p.id for p in profile.peers], payload=profile.payload.template,
                       valid=True)
        rows.append(row)
    if args.json:
        print(json.dumps({"search_path": [str(d) for d in search_dirs()], "profiles": rows}, indent=2))
        return 0
    if not rows:
        _console(stderr=True).print(f"no profiles in {', '.join(map(str, search_dirs()))} (plexus init NAME)")
        return 0
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "role", "peers", "payload", "file"):
        table.add_column(column)
    for row in rows:
        role = row["role"] or "invalid"
        name = row["name"] + (" (shadowed)" if row["shadowed"] else "")
        table.add_row(name, role, ", ".join(row["peers"]), row["payload"] or "", row["file"])
    _console().print(table)
    return 0


def run_schema(args: argparse.Namespace) -> int:
    from plexus.resources import schema_path

    sys.stdout.write(schema_path().read_text())
    return 0
