"""Editing copies of the example profiles and reading what `validate` says of them."""

from __future__ import annotations

from pathlib import Path

from plexus.profile import Problem, validate


def edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return path


def line_of(path: Path, fragment: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if fragment in line:
            return number
    raise AssertionError(f"{fragment!r} not in {path}")


def errors(path: Path) -> list[Problem]:
    return [p for p in validate(path) if p.is_error]


def only_error(path: Path) -> Problem:
    found = errors(path)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]
