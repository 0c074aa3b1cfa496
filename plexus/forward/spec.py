"""Forward specs in ssh's syntax: ``-L [bind_host:]port:host:hostport``, ``-R`` (the same text, the peer
listens), ``-D [bind_host:]port`` and the ``host:port`` targets a side exposes.

Hosts are names, IPv4 addresses or IPv6 addresses in brackets (``[::1]:8080``). A listening port may be 0 (any
free port: the bound one is reported); a target port is 1..65535. Bad text raises ValueError with a one-line
reason naming the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Self

LOOPBACK = "127.0.0.1"


def _fields(text: str) -> list[str]:
    """Split at colons outside brackets, keeping the brackets (``[::1]:80`` -> ``["[::1]", "80"]``)."""
    fields, current, depth = [], "", 0
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == ":" and depth == 0:
            fields.append(current)
            current = ""
        else:
            current += char
    fields.append(current)
    return fields


def _host(field: str, text: str) -> str:
    if field.startswith("[") and field.endswith("]"):
        host = field[1:-1]
        if ":" not in host:
            raise ValueError(f"{text!r}: brackets are for IPv6 addresses only")
    elif "[" in field or "]" in field:
        raise ValueError(f"{text!r}: unbalanced brackets in host {field!r}")
    else:
        host = field
    if not host or any(char.isspace() for char in host):
        raise ValueError(f"{text!r}: the host must be non-empty, without spaces")
    return host


def _port(field: str, text: str, *, listen: bool) -> int:
    low = 0 if listen else 1
    if not field.isdigit() or not low <= int(field) <= 65535:
        raise ValueError(f"{text!r}: port {field!r} must be a number {low}..65535")
    return int(field)


def _split(text: str, counts: tuple[int, ...]) -> list[str]:
    if "::" in re.sub(r"\[[^\]]*\]", "h", text):
        raise ValueError(f"{text!r}: IPv6 addresses go in brackets ([::1]:80)")
    fields = _fields(text.strip())
    if len(fields) not in counts or any(field.count("[") > 1 for field in fields):
        raise ValueError(f"{text!r}: expected {' or '.join(_SHAPES[n] for n in counts)}")
    return fields


_SHAPES = {1: "port", 2: "host:port", 3: "port:host:hostport", 4: "bind_host:port:host:hostport"}


@dataclass(frozen=True)
class Target:
    """``host:port``: where a stream connects, or where a listener binds."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, listen: bool = False) -> Target:
        host, port = _split(text, (2,))
        return cls(_host(host, text), _port(port, text, listen=listen))

    def key(self) -> tuple[str, int]:
        """What ``expose`` compares: the host case-insensitively (a name is not resolved), and the port."""
        return (self.host.lower(), self.port)


@dataclass(frozen=True)
class _Forward:
    bind: Target
    target: Target
    FLAG: ClassVar[str] = ""

    def __str__(self) -> str:
        return f"{self.FLAG} {self.bind}:{self.target}"

    @classmethod
    def parse(cls, text: str) -> Self:
        bind, target = _pair(text)
        return cls(bind, target)


@dataclass(frozen=True)
class LocalForward(_Forward):
    """``-L``: we listen on ``bind``; each connection reaches ``target`` from the peer's side."""

    FLAG: ClassVar[str] = "-L"


@dataclass(frozen=True)
class RemoteForward(_Forward):
    """``-R``: the peer listens on ``bind`` (loopback only); each connection reaches ``target`` from our side."""

    FLAG: ClassVar[str] = "-R"


@dataclass(frozen=True)
class Socks:
    """``-D``: a SOCKS5 listener on ``bind``; the peer connects to what each client asks for (if exposed)."""

    bind: Target

    def __str__(self) -> str:
        return f"-D {self.bind}"

    @classmethod
    def parse(cls, text: str) -> Socks:
        fields = _split(text, (1, 2))
        host = _host(fields[0], text) if len(fields) == 2 else LOOPBACK
        return cls(Target(host, _port(fields[-1], text, listen=True)))


def _pair(text: str) -> tuple[Target, Target]:
    fields = _split(text, (3, 4))
    bind_host = _host(fields[0], text) if len(fields) == 4 else LOOPBACK
    bind = Target(bind_host, _port(fields[-3], text, listen=True))
    return bind, Target(_host(fields[-2], text), _port(fields[-1], text, listen=False))
