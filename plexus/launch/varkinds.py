"""The kinds a template manifest may declare for its payload vars (``vars: {mtu: integer}``), and the rule for
vars it does not declare. Every payload var is pasted into a config file or an argv element, so a value must be
what its kind says and nothing more: ``mtu: "1400\\nscript-security 2\\nup /x.sh"`` must never reach openvpn.

Kept free of jinja2 and yaml: ``plexus validate`` uses it without loading the launcher.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

VarPath = tuple[str | int, ...]

# kind -> what a value of it looks like, for messages ("must be ...")
KINDS: dict[str, str] = {
    "address": "an IP address with an optional /prefix, such as 198.19.0.1 or 198.19.0.1/30",
    "port": "a port number from 1 to 65535",
    "integer": "a whole number such as 1400",
    "boolean": "true or false",
    "token": "one word of letters, digits and + / = : . _ @ - (at most 1024 characters)",
    "path": "a file path on one line that does not start with -",
    "text": "text on one line without control characters (at most 4096 characters)",
    "list": "a list of texts, each on one line without control characters (at most 256 entries)",
}
_TOKEN = re.compile(r"[A-Za-z0-9+/=:._@-]{1,1024}")  # the same charset as a peer's exported values
_ADDRESS = re.compile(r"[0-9A-Fa-f:.]+(?:/[0-9]{1,3})?")  # no scope ids, no netmask form
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_MAX_TEXT = 4096


def kind_problem(kind: str, value: Any) -> str | None:
    """What is wrong with ``value`` as a ``kind`` ("must be ..."), or None if it is fine."""
    if kind not in KINDS:  # load_template refuses such a manifest; this is for the built-ins' quick read
        return f"is declared of the unknown kind {kind!r} (one of {', '.join(KINDS)})"
    if _ok(kind, value):
        return None
    return f"must be {KINDS[kind]}; got {describe(value)}"


def _ok(kind: str, value: Any) -> bool:
    if kind == "list":
        return isinstance(value, list) and len(value) <= 256 and all(
            isinstance(item, str | int) and not isinstance(item, bool) and _ok("text", str(item)) for item in value)
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "boolean" or not isinstance(value, str | int | float):
        return False
    if kind in ("port", "integer"):
        if isinstance(value, float) or (isinstance(value, str) and not _INTEGER.fullmatch(value)):
            return False
        return kind == "integer" or 1 <= int(value) <= 65535
    text = str(value)
    if kind == "address":
        return isinstance(value, str) and is_address(text)
    if kind == "token":
        return _TOKEN.fullmatch(text) is not None
    if len(text) > _MAX_TEXT or bad_character(text) is not None:
        return False
    return kind == "text" or (text != "" and not text.startswith("-"))  # a path that is no option


def is_address(text: str) -> bool:
    if not _ADDRESS.fullmatch(text):
        return False
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def bad_character(text: str) -> str | None:
    """The first character that could end a config line or hide text (control, format, line separator)."""
    for char in text:
        if unicodedata.category(char)[0] == "C" or unicodedata.category(char) in ("Zl", "Zp"):
            return char
    return None


def text_problems(value: Any, path: VarPath = ()) -> list[tuple[VarPath, str]]:
    """The rule for vars no manifest declares: every text in it (list items and mapping keys too) is free of
    control characters, so it stays on one line. ``(path inside the value, what is wrong)`` per bad text."""
    if isinstance(value, str):
        char = bad_character(value)
        return [] if char is None else [(path, f"contains the control character {char!r}")]
    found: list[tuple[VarPath, str]] = []
    if isinstance(value, list):
        for index, item in enumerate(value):
            found += text_problems(item, (*path, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            found += text_problems(str(key), (*path, str(key)))
            found += text_problems(item, (*path, str(key)))
    return found


def var_problems(kinds: dict[str, str], vars: dict[str, Any]) -> list[VarProblem]:
    """Every bad var in ``vars``: a declared var checked against its kind, any other by :func:`text_problems`.
    None values are left to the ``needs`` check."""
    found: list[VarProblem] = []
    for name, value in vars.items():
        kind = kinds.get(str(name))
        if kind is None or value is None:
            found += [VarProblem((str(name), *path), None, text) for path, text in text_problems(value)]
        elif (problem := kind_problem(kind, value)) is not None:
            found.append(VarProblem((str(name),), kind, problem))
    return found


@dataclass(frozen=True)
class VarProblem:
    path: VarPath  # from the var's name down: ("mtu",) or ("extra", 2)
    kind: str | None  # the declared kind, None for an undeclared var
    message: str  # "must be a whole number such as 1400; got '1400\\n...'"

    @property
    def name(self) -> str:
        return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(self.path))

    def hint(self, template: str) -> str:
        if self.kind is None:
            return "a payload var must be text without control characters: a newline could inject config lines"
        return f"template {template} declares {self.path[0]} as {self.kind}"


def describe(value: Any) -> str:
    """A short, one-line picture of a value for a message."""
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(str(value))  # escapes newlines and control characters
    return text if len(text) <= 40 else text[:36] + "...'"
