"""Where the built-in schema, templates and systemd unit are: inside the installed wheel, or at the top of a
checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """``schemas``, ``templates`` or ``systemd``: the wheel copy (plexus/_data/NAME) first, else the checkout's
    top level."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"plexus data directory {name!r} is missing from this installation")


def schema_path() -> Path:
    return data_dir("schemas") / "profile.schema.json"


def builtin_templates_dir() -> Path:
    return data_dir("templates") / "exec"


def systemd_unit_path() -> Path:
    """The packaged systemd template unit ``plexus@.service`` (``plexus service install`` writes it out)."""
    return data_dir("systemd") / "plexus@.service"
