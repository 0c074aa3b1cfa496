"""The lab's state directory ``/run/plexus-lab/<name>/``: what was created (so that ``lab down`` can remove a
half-built lab), the PIDs of the processes it started, passwords, certificates, configs, logs and mailboxes.

Every namespace is journalled *before* it is created and every process right after it starts, so whatever a
crash leaves behind is listed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

from plexus.errors import LabError
from plexus.lab import system

STATE_ROOT = Path("/run/plexus-lab")
DEFAULT_NAME = "plexus"
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")


def lab_name(name: str | None = None) -> str:
    """The lab instance name: ``name``, else $PLEXUS_LAB_NAME, else ``plexus``; checked to be a safe name."""
    name = name or os.environ.get("PLEXUS_LAB_NAME") or DEFAULT_NAME
    if not _NAME_PATTERN.match(name):
        raise LabError(f"bad lab name {name!r}", hint="use 1-24 of a-z, 0-9 and '-' (PLEXUS_LAB_NAME)")
    return name


class LabState:
    """Paths and records under the state directory of one lab."""

    def __init__(self, name: str, root: Path = STATE_ROOT) -> None:
        self.name = name
        self.dir = root / name
        self.journal = self.dir / "created"
        self.pids_dir = self.dir / "pids"
        self.pki = self.dir / "pki"
        self.mail = self.dir / "mail"
        self.logs = self.dir / "log"
        self.etc = self.dir / "etc"
        self.sites = self.dir / "sites"
        self.passwords = self.dir / "passwords"
        self.config_file = self.dir / "lab.json"

    def exists(self) -> bool:
        return self.dir.exists()

    def create(self) -> None:
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        self.dir.parent.chmod(0o755)  # whatever the umask: lab users (``lab exec --user``) pass through too
        for path in (self.dir, self.pids_dir, self.pki, self.mail, self.logs, self.etc, self.sites):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)  # daemons drop privileges and must traverse to their files
        self.passwords.mkdir(mode=0o700, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.dir.parent.rmdir()  # only when no other lab is left

    # what was created ------------------------------------------------------------------------------------
    def record_namespace(self, namespace: str) -> None:
        with self.journal.open("a") as journal:
            journal.write(f"netns {namespace}\n")
            journal.flush()
            os.fsync(journal.fileno())

    def namespaces(self) -> list[str]:
        if not self.journal.exists():
            return []
        return [line.split()[1] for line in self.journal.read_text().splitlines() if line.startswith("netns ")]

    def record_pid(self, label: str, pid: int) -> Path:
        """Remember a process we started, with its start time so a later reuse of the PID is not ours."""
        path = self.pids_dir / f"{label}.pid"
        path.write_text(f"{pid} {system.start_time(pid) or 0}\n")
        return path

    def pids(self) -> dict[str, int]:
        """Recorded processes that still run (same PID and start time), by label."""
        return {label: pid for label, (pid, running) in self.recorded().items() if running}

    def recorded(self) -> dict[str, tuple[int, bool]]:
        """Every recorded process by label: (PID, whether that very process still runs)."""
        found: dict[str, tuple[int, bool]] = {}
        if self.pids_dir.is_dir():
            for path in self.pids_dir.glob("*.pid"):
                fields = path.read_text().split()
                if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                    pid = int(fields[0])
                    running = system.start_time(pid) == int(fields[1]) and system.alive(pid)
                    found[path.stem] = (pid, running)
        return found

    def forget_pid(self, label: str) -> None:
        (self.pids_dir / f"{label}.pid").unlink(missing_ok=True)

    # configuration and secrets ---------------------------------------------------------------------------
    def save_config(self, config: dict[str, Any]) -> None:
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")

    def load_config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_file.read_text())
        except (OSError, ValueError):
            raise LabError(f"lab {self.name!r} is not up (or half-built)",
                           hint="plexus lab up (or plexus lab down to clean up)") from None
        if not isinstance(data, dict):
            raise LabError(f"{self.config_file} is damaged", hint="plexus lab down && plexus lab up")
        return data

    def make_password(self, user: str) -> str:
        password = secrets.token_urlsafe(18)
        path = self.passwords / user
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return password

    def password(self, user: str) -> str:
        try:
            return (self.passwords / user).read_text().strip()
        except OSError:
            raise LabError(f"no password {user!r} in lab {self.name!r}", hint="plexus lab up") from None
