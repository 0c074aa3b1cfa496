"""One doctor check: what was checked, how it went, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "n/a"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
