"""The packaged systemd template unit ``plexus@.service`` (instance = profile name) and where it is installed:
``/etc/systemd/system`` for the system manager, ``$XDG_CONFIG_HOME/systemd/user`` (``~/.config``) for a user's.

A user unit is the same file without the blocks a user manager cannot apply (capabilities, devices, the
read-only file system: they need privileges), and wanted by ``default.target``. ``root`` installs below another
directory (an image being built, a test), like ``DESTDIR``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from plexus.errors import PlexusError, ProfileError
from plexus.resources import systemd_unit_path

UNIT_NAME = "plexus@.service"
SYSTEM_DIR = Path("/etc/systemd/system")
SYSTEM_PROFILES = Path("/etc/plexus/profiles")
# The PATH the system manager gives its services (systemd.exec(5), "Environment variables in spawned processes").
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_EXEC = "ExecStart=/usr/bin/env plexus up %i"
# A blank-line separated block of [Service] that sets one of these is left out of a user unit.
SYSTEM_ONLY = frozenset({"CapabilityBoundingSet", "DeviceAllow", "ProtectSystem"})
INSTANCE = re.compile(r"[A-Za-z0-9_.-]{1,200}")  # needs no systemd-escape: %i is the profile name as typed


class ServiceError(PlexusError):
    """The unit could not be installed or enabled."""


def check_instance(name: str) -> str:
    """A profile name usable as the unit's instance (``plexus@NAME``), else a ProfileError."""
    if not INSTANCE.fullmatch(name) or name.startswith("."):
        raise ProfileError(f"{name!r}: not usable as a unit instance (plexus@NAME): a profile name of letters, "
                           "digits, '.', '_' and '-' only", hint="the service finds the profile by name, not path")
    return name


def unit_text(*, user: bool = False, exec_path: str | None = None) -> str:
    """The unit file: the packaged one, for a user manager if ``user``, with ``exec_path`` as the program."""
    text = systemd_unit_path().read_text()
    if exec_path is not None:
        text = text.replace(DEFAULT_EXEC, f"ExecStart={_exec_word(exec_path)} up %i")
    return user_unit(text) if user else text


def _exec_word(path: str) -> str:
    if not os.path.isabs(path):
        raise ServiceError(f"--exec {path}: not an absolute path", hint="e.g. --exec \"$(command -v plexus)\"")
    if any(c in path for c in "\"'\\\n") or path != path.strip():
        raise ServiceError(f"--exec {path!r}: quotes, backslashes and newlines cannot go into ExecStart=")
    escaped = path.replace("%", "%%")  # a unit specifier otherwise
    return f'"{escaped}"' if " " in escaped else escaped


def user_unit(text: str) -> str:
    """``text`` without the privileged blocks, wanted by ``default.target``."""
    blocks = text.split("\n\n")
    kept = [block for block in blocks if not SYSTEM_ONLY & _keys(block)]
    return "\n\n".join(kept).replace("WantedBy=multi-user.target", "WantedBy=default.target")


def _keys(block: str) -> set[str]:
    return {line.split("=", 1)[0].strip() for line in block.splitlines()
            if "=" in line and not line.lstrip().startswith(("#", ";"))}


def _below(root: Path | None, path: Path) -> Path:
    return path if root is None else root / path.relative_to(path.anchor)


def config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def unit_dir(*, user: bool = False, root: Path | None = None) -> Path:
    return _below(root, config_home() / "systemd" / "user" if user else SYSTEM_DIR)


def profile_dir(*, user: bool = False, root: Path | None = None) -> Path:
    """Where the service looks for its profile (its working directory is /, so ./profiles is no help)."""
    return _below(root, config_home() / "plexus" / "profiles" if user else SYSTEM_PROFILES)


def profile_found(name: str, *, user: bool = False, root: Path | None = None) -> Path | None:
    directory = profile_dir(user=user, root=root)
    for candidate in (directory / f"{name}.yaml", directory / f"{name}.yml", directory / name):
        if candidate.is_file():
            return candidate
    return None


def program_hint() -> str | None:
    """When ``/usr/bin/env plexus`` would not find plexus on systemd's PATH: the program to name with --exec
    (this interpreter's ``plexus`` script, else the one on our PATH); None when it would."""
    if shutil.which("plexus", path=SYSTEMD_PATH):
        return None
    beside = Path(sys.executable).parent / "plexus"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("plexus")


@dataclass(frozen=True)
class Install:
    """What ``plexus service install`` writes: the unit's ``path``, its ``text``, and what is there now."""

    name: str
    user: bool
    root: Path | None
    path: Path
    text: str
    current: str | None

    @property
    def state(self) -> str:
        """``new``, ``unchanged`` or ``changed`` (a file that differs: edited, or an older plexus's)."""
        if self.current is None:
            return "new"
        return "unchanged" if self.current == self.text else "changed"

    def commands(self) -> list[list[str]]:
        """The systemctl calls that start the instance now and at boot (below ``root``: enable only)."""
        scope = ["--user"] if self.user else []
        if self.root is not None:
            return [["systemctl", *scope, f"--root={self.root}", "enable", f"plexus@{self.name}"]]
        return [["systemctl", *scope, "daemon-reload"], ["systemctl", *scope, "enable", "--now", f"plexus@{self.name}"]]


def plan(name: str, *, user: bool = False, root: Path | None = None, exec_path: str | None = None) -> Install:
    check_instance(name)
    path = unit_dir(user=user, root=root) / UNIT_NAME
    try:
        current = path.read_text() if path.exists() else None
    except OSError as error:
        raise ServiceError(f"{path}: {error.strerror}") from error
    return Install(name, user, root, path, unit_text(user=user, exec_path=exec_path), current)


def write(install: Install) -> None:
    """Write the unit (0644, atomically: a manager reloading at that moment sees the old or the new file)."""
    temporary = install.path.with_name(f".{UNIT_NAME}.tmp")
    try:
        install.path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(install.text)
        temporary.chmod(0o644)
        temporary.replace(install.path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise ServiceError(f"cannot write {install.path}: {error.strerror}",
                           hint="run as root, or install a user unit with --user") from error
