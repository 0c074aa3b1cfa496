"""Reading a profile document's fields, for the checks: a value of the right type at a path, the peers, paths as
written (relative to the file that wrote them), files that must be readable, and where secrets may be."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from plexus.profile.document import Document
from plexus.profile.problems import FieldPath

SECRETS: tuple[FieldPath, ...] = (("rendezvous", "email", "password"), ("rendezvous", "psk"))


def get(data: Any, path: FieldPath, kind: type | tuple[type, ...] = object) -> Any:
    """The value at ``path`` if it is there and of ``kind``, else None."""
    for part in path:
        if isinstance(part, int):
            if not isinstance(data, list) or part >= len(data):
                return None
        elif not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data if isinstance(data, kind) and not (kind is int and isinstance(data, bool)) else None


def resolve_path(document: Document, path: FieldPath, text: str) -> Path:
    """A path as written at ``path``: relative to the folder of the file it was written in."""
    written = Path(text)
    with contextlib.suppress(RuntimeError):  # ~nosuchuser: keep it as written, the file check reports it
        written = written.expanduser()
    return written if written.is_absolute() else document.file_of(path).parent / written


def peers(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, p) for i, p in enumerate(get(data, ("peers",), list) or []) if isinstance(p, dict)]


def secret_paths(data: Any) -> list[FieldPath]:
    """Where the profile may hold secrets: the mail password, the profile's and each peer's pre-shared key,
    the TURN servers' passwords and shared secrets."""
    turn = get(data, ("relay", "servers"), list) or []
    return [*SECRETS, *((("peers", index, "psk")) for index, _ in peers(data)),
            *(("relay", "servers", index, name) for index in range(len(turn)) for name in ("password", "secret"))]


def readable_file(document: Document, path: FieldPath, text: str, what: str) -> Path | None:
    """The file named at ``path`` if it can be read; else a problem and None."""
    file = resolve_path(document, path, text)
    try:
        if not file.exists():
            document.problem(path, f"{what} {file} does not exist",
                             "the path is relative to the profile's folder")
            return None
        if not file.is_file():
            document.problem(path, f"{what} {file} is not a file")
            return None
        if not os.access(file, os.R_OK):
            document.problem(path, f"{what} {file} is not readable", "check its owner and mode")
            return None
    except (OSError, ValueError) as error:  # a name too long, a NUL byte, ...
        document.problem(path, f"{what} {file}: {getattr(error, 'strerror', None) or error}")
        return None
    return file


def read_small(document: Document, path: FieldPath, file: Path, limit: int = 1 << 20) -> bytes | None:
    """The content of a certificate or key file (at most ``limit`` bytes); None and a problem if unreadable."""
    try:
        with file.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as error:
        document.problem(path, f"cannot read {file}: {error.strerror or error}")
        return None
    if len(data) > limit:
        document.problem(path, f"{file} is larger than {limit // 1024} kB; not a certificate or key")
        return None
    return data
