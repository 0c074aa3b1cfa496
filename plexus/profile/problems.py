"""One problem found in a profile, located in the YAML file where the offending value was written."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

FieldPath = tuple[str | int, ...]
Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Mark:
    """Where a YAML node starts: file, 1-based line and column."""

    file: Path
    line: int
    col: int


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def field_text(path: FieldPath) -> str:
    """``("peers", 1, "id")`` -> ``peers[1].id``; an odd key is quoted: ``vars["a b"]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _NAME.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def one_line(text: str) -> str:
    """``text`` with control characters (newlines too) escaped, so that a problem stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True)
class Problem:
    """``str()`` is the one line people see: ``file:line:col: field.path: what is wrong (hint)``."""

    file: Path
    line: int
    col: int
    field: str  # dotted path, "" for the document as a whole
    message: str
    hint: str | None = None
    severity: Severity = "error"

    @classmethod
    def at(cls, mark: Mark, path: FieldPath, message: str, hint: str | None = None,
           severity: Severity = "error") -> Problem:
        return cls(mark.file, mark.line, mark.col, field_text(path), message, hint, severity)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        label = "" if self.severity == "error" else f"{self.severity}: "
        field = f"{one_line(self.field)}: " if self.field else ""
        hint = f" ({one_line(self.hint)})" if self.hint else ""
        return f"{one_line(str(self.file))}:{self.line}:{self.col}: {label}{field}{one_line(self.message)}{hint}"

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.file), "line": self.line, "col": self.col, "field": self.field,
                "message": self.message, "hint": self.hint, "severity": self.severity}
