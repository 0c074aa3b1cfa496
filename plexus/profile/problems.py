"""One problem found in a profile, located in the YAML file where the offending value was written."""

from __future__ import annotations

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


def field_text(path: FieldPath) -> str:
    """``("peers", 1, "id")`` -> ``peers[1].id``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


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
        field = f"{self.field}: " if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {label}{field}{self.message}{hint}"

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.file), "line": self.line, "col": self.col, "field": self.field,
                "message": self.message, "hint": self.hint, "severity": self.severity}
