"""A profile document after ``extends:``: the merged data, and for every value the file and position where it
was written, so that a problem found in the merged result points into the right file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plexus.profile.problems import FieldPath, Mark, Problem
from plexus.profile.source import Source, read_source

MAX_CHAIN = 16


@dataclass
class Document:
    path: Path  # the file asked for (the last of the chain)
    data: dict[str, Any] = field(default_factory=dict)
    marks: dict[FieldPath, Mark] = field(default_factory=dict)
    key_marks: dict[FieldPath, Mark] = field(default_factory=dict)
    chain: list[Path] = field(default_factory=list)  # base first
    problems: list[Problem] = field(default_factory=list)

    def locate(self, path: FieldPath) -> Mark:
        """The mark of the value at ``path``, else of its nearest written ancestor, else the file's start."""
        for end in range(len(path), 0, -1):
            mark = self.marks.get(path[:end])
            if mark is not None:
                return mark
        return Mark(self.path, 1, 1)

    def locate_key(self, path: FieldPath) -> Mark:
        return self.key_marks.get(path) or self.locate(path)

    def problem(self, path: FieldPath, message: str, hint: str | None = None, *, key: bool = False,
                severity: Any = "error") -> None:
        mark = self.locate_key(path) if key else self.locate(path)
        self.problems.append(Problem.at(mark, path, message, hint, severity))

    def file_of(self, path: FieldPath) -> Path:
        """The file the value at ``path`` was written in (relative paths in it resolve against its folder)."""
        return self.locate(path).file


def load_document(path: Path) -> Document:
    """Read ``path`` and the bases it ``extends:``; problems of every file end up in ``problems``."""
    document = Document(path)
    sources: list[Source] = []
    seen: list[Path] = []
    current: Path | None = path
    while current is not None:
        source = read_source(current)
        document.problems.extend(source.problems)
        if not isinstance(source.data, dict):
            break
        sources.append(source)
        seen.append(_identity(current))
        current = _base_of(source, seen, document)
    sources.reverse()
    document.chain = [source.path for source in sources]
    for source in sources:
        _merge_into(document, source)
    document.data.pop("extends", None)
    return document


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _base_of(source: Source, seen: list[Path], document: Document) -> Path | None:
    extends = source.data.get("extends")
    if extends is None:
        return None
    mark = source.marks.get(("extends",), Mark(source.path, 1, 1))
    if not isinstance(extends, str) or not extends.strip():
        document.problems.append(Problem.at(mark, ("extends",), "must be the path of a base profile",
                                            "e.g. extends: mailbox-base.yaml"))
        return None
    base = source.path.parent / extends
    if _identity(base) in seen:
        names = " -> ".join(p.name for p in [*seen, base])
        document.problems.append(Problem.at(mark, ("extends",), f"extends cycle: {names}",
                                            "a base must not extend the profiles built on it"))
        return None
    if len(seen) >= MAX_CHAIN:
        document.problems.append(Problem.at(mark, ("extends",), f"more than {MAX_CHAIN} bases in a chain"))
        return None
    if not base.is_file():
        exists = base.exists()
        what = "is not a regular file" if exists else "does not exist"
        hint = "give the path of a YAML profile" if exists else "the path is relative to this profile's folder"
        document.problems.append(Problem.at(mark, ("extends",), f"base profile {base} {what}", hint))
        return None
    return base


def _merge_into(document: Document, source: Source) -> None:
    """Deep-merge ``source`` over what the document holds: mappings merge key by key, anything else (lists
    included) replaces, and the marks of what was replaced go with it."""
    _merge_mapping(document, document.data, source, source.data, ())
    if () not in document.marks:
        document.marks[()] = source.marks[()]


def _merge_mapping(document: Document, target: dict[str, Any], source: Source, data: dict[str, Any],
                   path: FieldPath) -> None:
    for key, value in data.items():
        key_path = (*path, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            document.marks[key_path] = source.marks[key_path]
            document.key_marks[key_path] = source.key_marks[key_path]
            _merge_mapping(document, target[key], source, value, key_path)
            continue
        for table in (document.marks, document.key_marks):
            for stale in [p for p in table if p[: len(key_path)] == key_path]:
                del table[stale]
        target[key] = _copy(value)
        for own, table in ((source.marks, document.marks), (source.key_marks, document.key_marks)):
            table.update({p: m for p, m in own.items() if p[: len(key_path)] == key_path})


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
