"""Where profiles are found: a path as given; else ``$PLEXUS_PROFILE_PATH`` (colon-separated folders), else
``./profiles``, ``$XDG_CONFIG_HOME/plexus/profiles`` (default ``~/.config``) and ``/etc/plexus/profiles``."""

from __future__ import annotations

import os
from pathlib import Path

from plexus.errors import ProfileError

SUFFIXES = (".yaml", ".yml")


def search_dirs() -> list[Path]:
    configured = os.environ.get("PLEXUS_PROFILE_PATH")
    if configured:
        return [Path(part).expanduser() for part in configured.split(":") if part]
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path("profiles"), Path(config_home) / "plexus" / "profiles", Path("/etc/plexus/profiles")]


def find_profile(name_or_path: str | Path) -> Path:
    """The file of a profile given by path or by name; ProfileError naming the folders searched."""
    text = str(name_or_path)
    try:
        given = Path(name_or_path).expanduser()
        if given.is_file():
            return given
        if given.exists():
            raise ProfileError(f"{text}: not a file")
    except (OSError, ValueError, RuntimeError) as error:
        raise ProfileError(f"{text}: {getattr(error, 'strerror', None) or error}") from error
    if "/" not in text:
        names = [text] if text.endswith(SUFFIXES) else [text + suffix for suffix in SUFFIXES] + [text]
        for directory in search_dirs():
            for name in names:
                candidate = directory / name
                try:
                    if candidate.is_file():
                        return candidate
                except (OSError, ValueError):
                    continue
    looked = ", ".join(str(d) for d in search_dirs())
    raise ProfileError(f"profile {text!r} not found", hint=f"looked for a file, then in {looked}; "
                       "plexus init NAME writes one")


def find_profiles() -> list[Path]:
    """Every profile file on the search path, in search order (a name found twice: the first one is used)."""
    found: list[Path] = []
    seen: set[Path] = set()
    for directory in search_dirs():
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix in SUFFIXES and entry.is_file() and entry.resolve() not in seen:
                seen.add(entry.resolve())
                found.append(entry)
    return found
