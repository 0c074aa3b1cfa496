"""``plexus service install PROFILE``: write the systemd template unit ``plexus@.service`` and print (or, with
``--enable``, run) the systemctl line that starts ``plexus@PROFILE``. systemctl runs only when asked."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from plexus.service.unit import Install, ServiceError, plan, profile_dir, profile_found, program_hint, write


def run_service(args: argparse.Namespace) -> int:
    if getattr(args, "service_command", None) == "install":
        return _install(args)
    raise ServiceError("which service command?", hint="plexus service install PROFILE [--user] [--dry-run]")


def _install(args: argparse.Namespace) -> int:
    root = Path(args.root).resolve() if args.root else None
    if args.enable and args.dry_run:
        raise ServiceError("--enable and --dry-run contradict each other")
    if args.enable and root is not None and args.user:
        raise ServiceError("--enable below --root enables system units only", hint="drop --user or --enable")
    install = plan(args.name, user=args.user, root=root, exec_path=args.exec_path)
    lines = [shlex.join(command) for command in install.commands()]
    if args.dry_run:
        print(f"# would write {install.path} ({install.state})")
        print(install.text, end="" if install.text.endswith("\n") else "\n")
        print(f"# then: {' && '.join(lines)}")
        _notes(install, args.exec_path)
        return 0
    if install.state == "changed" and not args.force:
        raise ServiceError(f"{install.path} exists and differs from this plexus's unit",
                           hint="--force replaces it; local changes belong in a drop-in: "
                                f"systemctl{' --user' if args.user else ''} edit plexus@.service")
    if install.state != "unchanged":
        write(install)
    print(f"{'unchanged' if install.state == 'unchanged' else 'wrote'} {install.path}", file=sys.stderr)
    _notes(install, args.exec_path)
    if not args.enable:
        print(" && ".join(lines))
        return 0
    for command in install.commands():
        _systemctl(command)
    print(f"plexus: enabled plexus@{install.name}", file=sys.stderr)
    return 0


def _notes(install: Install, exec_path: str | None) -> None:
    if profile_found(install.name, user=install.user, root=install.root) is None:
        print(f"plexus: note: no profile {install.name!r} in {profile_dir(user=install.user, root=install.root)} "
              "yet: the service finds it there, and exits 2 (not restarted) until it does", file=sys.stderr)
    hint = None if exec_path else program_hint()
    if hint is not None:
        print(f"plexus: note: plexus is not on systemd's PATH, so ExecStart=/usr/bin/env plexus will not find "
              f"it; install with --exec {shlex.quote(hint)}", file=sys.stderr)


def _systemctl(command: list[str]) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServiceError(f"{shlex.join(command)}: {getattr(error, 'strerror', None) or error}") from error
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ServiceError(f"{shlex.join(command)} failed: {said}")
