"""Profiles: find, read, validate and load them.

``load(name_or_path)`` gives the typed :class:`~plexus.profile.model.Profile` or raises ProfileError;
``validate(path)`` lists every problem at once, each one line ``file:line:col: field.path: what (hint)``.
Heavy libraries (jsonschema, cryptography, jinja2) are imported only when a profile is checked.
"""

from __future__ import annotations

from pathlib import Path

from plexus.errors import ProfileError
from plexus.profile.lookup import find_profile, find_profiles, search_dirs
from plexus.profile.model import Profile
from plexus.profile.problems import Problem

__all__ = ["Problem", "Profile", "ProfileError", "examine", "find_profile", "find_profiles", "is_base", "load",
           "search_dirs", "validate"]


def _check(path: Path, *, allow_base: bool) -> tuple[object, list[Problem], bool]:
    from plexus.profile.checks import check_all
    from plexus.profile.document import load_document
    from plexus.profile.schema import check_schema

    document = load_document(path)
    if document.problems:  # unreadable or not YAML: nothing more to say about it
        return document, document.problems, False
    base = allow_base and is_base(document.data)
    check_schema(document, base=base)
    check_all(document, base=base)
    problems = sorted(set(document.problems), key=lambda p: (p.severity != "error", str(p.file), p.line, p.col,
                                                             p.field, p.message))
    return document, problems, base


def is_base(data: object) -> bool:
    """A profile with neither ``host`` nor ``peers`` is a base for others to ``extends:``; validate checks
    what it holds but not that it is complete (the profiles that extend it must be)."""
    return isinstance(data, dict) and "host" not in data and "peers" not in data


def validate(path: str | Path, *, allow_base: bool = True) -> list[Problem]:
    """Every problem of the profile file at ``path`` (errors and warnings, see ``Problem.severity``)."""
    return _check(Path(path), allow_base=allow_base)[1]


def examine(path: str | Path) -> tuple[list[Problem], bool]:
    """``validate`` plus whether the file was checked as a base profile (see :func:`is_base`)."""
    _, problems, base = _check(Path(path), allow_base=True)
    return problems, base


def load(name_or_path: str | Path) -> Profile:
    """The profile, validated and typed; ProfileError with the first problem (and how many more) if invalid."""
    from plexus.profile.build import build_profile
    from plexus.profile.document import Document

    path = find_profile(name_or_path)
    document, problems, _ = _check(path, allow_base=False)
    errors = [p for p in problems if p.is_error]
    if errors:
        more = f" (and {len(errors) - 1} more: plexus validate {path})" if len(errors) > 1 else ""
        error = ProfileError(f"{errors[0]}{more}")
        error.problems = errors  # type: ignore[attr-defined]
        raise error
    assert isinstance(document, Document)
    warnings = tuple(str(p) for p in problems if not p.is_error)
    return build_profile(document, warnings)
