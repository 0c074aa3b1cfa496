"""Read one YAML profile file into plain data plus the position of every node.

PyYAML composes the node graph (which keeps marks); we build the data ourselves so that each mapping value and
key keeps its line and column, and so that the things a profile never needs (aliases, custom tags, duplicate
keys, non-text keys) become one clear problem each instead of a surprise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plexus.profile.problems import FieldPath, Mark, Problem

MAX_BYTES = 1 << 20  # a profile is a few kB; refuse anything that cannot be one
MAX_DEPTH = 32

_Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TAGS = {f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "str")}
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge"}  # kept as the text written


@dataclass
class Source:
    """One parsed file: its data, and marks for values (``marks``) and mapping keys (``key_marks``)."""

    path: Path
    data: Any = None
    marks: dict[FieldPath, Mark] = field(default_factory=dict)
    key_marks: dict[FieldPath, Mark] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


class _Reject(Exception):
    def __init__(self, node: yaml.Node, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.node, self.message, self.hint = node, message, hint


def read_source(path: Path) -> Source:
    """Parse ``path``; problems (unreadable, not UTF-8, YAML syntax, ...) go to ``Source.problems``."""
    source = Source(path)
    start = Mark(path, 1, 1)
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except OSError as error:
        source.problems.append(Problem.at(start, (), f"cannot read the file: {error.strerror or error}"))
        return source
    if len(raw) > MAX_BYTES:
        source.problems.append(Problem.at(start, (), "file is larger than 1 MB; a profile is a few kB"))
        return source
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line, col = _line_col(raw, error.start)
        source.problems.append(Problem(path, line, col, "", f"byte 0x{raw[error.start]:02x} is not UTF-8",
                                       "save the file as UTF-8"))
        return source
    try:
        # libyaml recurses in C and crashes on very deep flow nesting; the Python loader raises RecursionError
        deep = text.count("[") + text.count("{") > 1000
        root = yaml.compose(text, Loader=yaml.SafeLoader if deep else _Loader)
    except yaml.MarkedYAMLError as error:
        source.problems.append(_syntax_problem(path, error, text))
        return source
    except yaml.YAMLError as error:  # ReaderError (control characters) has a position, not a mark
        position = getattr(error, "position", 0)
        line, col = _line_col(text.encode(), len(text[:position].encode()))
        reason = getattr(error, "reason", "") or str(error).splitlines()[0]
        source.problems.append(Problem(path, line, col, "", f"invalid character: {reason}",
                                       "remove control characters"))
        return source
    except RecursionError:
        source.problems.append(Problem.at(start, (), "the document is nested too deeply"))
        return source
    if root is None:
        source.problems.append(Problem.at(start, (), "the profile is empty", "plexus init NAME writes a starter"))
        return source
    if not isinstance(root, yaml.MappingNode) or root.tag != "tag:yaml.org,2002:map":
        source.problems.append(Problem.at(_mark(path, root), (), "the top level must be a mapping of keys",
                                          "e.g. version: 1, host: {id: laptop}, ..."))
        return source
    builder = _Builder(source)
    source.data = builder.value(root, (), 0)
    return source


class _Builder:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.seen: set[int] = set()
        self.constructor = yaml.constructor.SafeConstructor()

    def problem(self, node: yaml.Node, path: FieldPath, message: str, hint: str | None = None) -> None:
        self.source.problems.append(Problem.at(_mark(self.source.path, node), path, message, hint))

    def value(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        self.source.marks[path] = _mark(self.source.path, node)
        try:
            return self._value(node, path, depth)
        except _Reject as reject:
            self.problem(reject.node, path, reject.message, reject.hint)
            return None

    def _value(self, node: yaml.Node, path: FieldPath, depth: int) -> Any:
        if id(node) in self.seen:
            raise _Reject(node, "YAML aliases (*name) are not supported in profiles", "write the value out")
        self.seen.add(id(node))
        if depth > MAX_DEPTH:
            raise _Reject(node, "nested too deeply")
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                raise _Reject(node, f"unsupported YAML tag {node.tag}", "remove the tag")
            return self.mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise _Reject(node, f"unsupported YAML tag {node.tag}", "remove the tag")
            return [self.value(item, (*path, index), depth + 1) for index, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self.scalar(node)

    def mapping(self, node: yaml.MappingNode, path: FieldPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, path, "a key must be plain text, not a list or mapping")
                continue
            key = str(key_node.value)
            key_path = (*path, key)
            if key in result:
                first = self.source.key_marks[key_path]
                self.problem(key_node, key_path, f"duplicate key '{key}'",
                             f"first given at line {first.line}; keep one")
                continue
            self.source.key_marks[key_path] = _mark(self.source.path, key_node)
            result[key] = self.value(value_node, key_path, depth + 1)
        return result

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise _Reject(node, f"unsupported YAML tag {node.tag}", "remove the tag")
        if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
            return node.value  # YAML 1.1 base-60 numbers (1:30 == 90) surprise everyone: keep the text
        try:
            return self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError) as error:
            raise _Reject(node, f"cannot read this value: {error}") from error


def _mark(path: Path, node: yaml.Node) -> Mark:
    return Mark(path, node.start_mark.line + 1, node.start_mark.column + 1)


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    before = data[:offset]
    line_start = before.rfind(b"\n") + 1
    return before.count(b"\n") + 1, len(before[line_start:].decode("utf-8", "replace")) + 1


def _syntax_problem(path: Path, error: yaml.MarkedYAMLError, text: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = " ".join(str(error.problem or error.context or "invalid YAML").split())
    hint = None
    lines = text.splitlines()
    if "\t" in message or (0 < line <= len(lines) and "\t" in lines[line - 1][: max(col, 1)]):
        message, hint = "a tab character in the indentation", "indent with spaces, not tabs"
    elif "single document" in str(error.context):
        hint = "a profile is one YAML document; remove the extra '---'"
    elif error.context:
        hint = " ".join(str(error.context).split())
    return Problem(path, line, col, "", f"YAML syntax: {message}", hint)
