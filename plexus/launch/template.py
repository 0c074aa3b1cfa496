"""Payload templates: from a connected session to the exact argv, environment and files to launch.

Three steps, matching the session's life:

1. ``prepare(template)`` before the offer is sent: generate the per-session key material the template declares
   and render its ``exports`` (public values only, e.g. a WireGuard public key or a certificate fingerprint),
   which travel to the peer inside the authenticated offer.
2. ``check_vars(template, vars)`` at validation time: which payload vars are missing or not of the kind the
   manifest declares (any var, declared or not, must be free of control characters: no config injection).
3. ``render(template, prepared, ctx, run_dir)`` after the handshake: write the files into the private run
   directory and render argv and env. The caller runs the argv as it is, never through a shell.

Rendering uses jinja2's ImmutableSandboxedEnvironment with StrictUndefined: a template cannot reach Python
internals, and a missing value is an error naming the variable and the line, never an empty string.
The context is documented in ``templates/exec/README.md``.
"""

from __future__ import annotations

import base64
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2

from plexus.errors import LaunchError
from plexus.launch import keys as keygen
from plexus.launch import varkinds
from plexus.launch.manifest import (
    MANIFEST,
    FileSpec,
    Scope,
    Template,
    find_template,
    list_templates,
    load_template,
    search_dirs,
    user_templates_dir,
)

__all__ = [
    "FileSpec",
    "Prepared",
    "Rendered",
    "SessionContext",
    "Template",
    "check_vars",
    "find_template",
    "list_templates",
    "load_template",
    "mask",
    "prepare",
    "render",
    "search_dirs",
    "user_templates_dir",
]

# A peer's exported value is pasted into config files and argv: it must be one harmless token
# (base64 keys, hex fingerprints, addresses), so a peer cannot inject config lines.
_SAFE_PEER_VALUE = re.compile(r"^[A-Za-z0-9+/=:._@-]{1,1024}$")
_MASK = "********"


@dataclass
class Prepared:
    """Per-session material for one template: keep it from the offer until the launch."""

    template: str
    keys: dict[str, dict[str, str]] = field(repr=False)  # name -> generated values (some secret)
    exports: dict[str, str] = field(default_factory=dict)  # public values for the peer
    secrets: list[str] = field(repr=False, default_factory=list)  # the secret parts of ``keys``


@dataclass(frozen=True)
class SessionContext:
    """What the session knows when the payload starts."""

    inner: tuple[str, int]  # our local endpoint (the punched socket's address)
    outer: tuple[str, int]  # our public endpoint as STUN saw it
    peer: tuple[str, int]  # the peer's public endpoint we punched to
    secret: bytes = field(repr=False)
    host_id: str
    peer_id: str
    role: str  # "accept" | "initiate"
    peer_values: dict[str, str] = field(default_factory=dict)  # what the peer's template exported
    vars: dict[str, Any] = field(default_factory=dict)  # the profile's payload vars for this peer


@dataclass
class Rendered:
    argv: list[str]
    env: dict[str, str]
    files: dict[str, Path]
    secrets: list[str] = field(repr=False, default_factory=list)  # values to mask when printing

    def mask(self, text: str) -> str:
        return mask(text, self.secrets)


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with every secret value replaced by asterisks (longest first, so a PEM block goes whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


def check_vars(template: Template, vars: dict[str, Any]) -> list[str]:
    """One human line per payload var the template needs and the profile does not give, and per var whose
    value is not of its declared kind (or, undeclared, holds a control character)."""
    wanted = ", ".join(template.needs)
    missing = [
        f"payload var {need!r} is missing ({template.name} needs {wanted})"
        for need in template.needs
        if vars.get(need) is None or vars.get(need) == ""
    ]
    bad = [f"payload var {problem.name!r} {problem.message} ({problem.hint(template.name)})"
           for problem in varkinds.var_problems(template.vars, vars)]
    return missing + bad


def prepare(template: Template, vars: dict[str, Any] | None = None) -> Prepared:
    """Fresh key material for one session, and the public values to send to the peer."""
    material = {name: keygen.generate(kind) for name, kind in template.keys.items()}
    context = {
        "keys": _scope("keys", {n: _scope(f"keys.{n}", v) for n, v in material.items()}),
        "vars": _scope("vars", dict(vars or {})),
    }
    secrets = [
        value
        for name, kind in template.keys.items()
        for part, value in material[name].items()
        if part in keygen.SECRET_FIELDS[kind]
    ]
    prepared = Prepared(template=template.name, keys=material, secrets=secrets)
    for name, text in template.exports.items():
        value = _render_string(template, text, context, f"exports.{name}").strip()
        if not _SAFE_PEER_VALUE.match(value):
            raise LaunchError(f"{template.where(MANIFEST)}: exports.{name} renders to an unsafe value")
        if value in prepared.secrets:
            raise LaunchError(f"{template.where(MANIFEST)}: exports.{name} would send a secret to the peer")
        prepared.exports[name] = value
    return prepared


def render(template: Template, prepared: Prepared, ctx: SessionContext, run_dir: Path) -> Rendered:
    """Write the template's files into ``run_dir`` and render argv and env for this session."""
    problems = check_vars(template, ctx.vars)
    if problems:
        raise LaunchError(problems[0])
    if prepared.template != template.name:
        raise LaunchError(f"prepared material is for template {prepared.template!r}, not {template.name!r}")
    _check_peer_values(template, ctx.peer_values)
    run_dir = Path(run_dir)
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(run_dir, 0o700)
    files = {spec.name: run_dir / spec.name for spec in template.files}
    context = _context(template, prepared, ctx, run_dir, files)
    payload_key = str(context["payload_key"])
    secrets = [ctx.secret.hex(), payload_key, base64.b64encode(bytes.fromhex(payload_key)).decode(), *prepared.secrets]
    for spec in template.files:
        _write_file(files[spec.name], _render_file(template, spec, context), spec.mode)
    argv = [_render_string(template, text, context, f"argv[{i}]") for i, text in enumerate(template.argv)]
    env = {k: _render_string(template, text, context, f"env.{k}") for k, text in template.env.items()}
    return Rendered(argv=argv, env=env, files=files, secrets=secrets)


def _check_peer_values(template: Template, peer_values: dict[str, str]) -> None:
    # Both sides run the same template, so the peer must have sent what we export.
    for name in template.exports:
        if name not in peer_values:
            raise LaunchError(
                f"the peer sent no {name!r} value ({template.name} needs the peer's {name})",
                hint="does the peer use the same payload template?",
            )
    for name, value in peer_values.items():
        if not isinstance(value, str) or not _SAFE_PEER_VALUE.match(value):
            raise LaunchError(f"the peer's value {name!r} is not a single safe token; refusing to use it")


def _scope(path: str, items: dict[str, Any]) -> Scope:
    return Scope(path, items)


def _endpoint(path: str, endpoint: tuple[str, int]) -> Scope:
    return _scope(path, {"ip": str(endpoint[0]), "port": int(endpoint[1])})


def _context(
    template: Template, prepared: Prepared, ctx: SessionContext, run_dir: Path, files: dict[str, Path]
) -> dict[str, Any]:
    return {
        "inner": _endpoint("inner", ctx.inner),
        "outer": _endpoint("outer", ctx.outer),
        "peer": _endpoint("peer", ctx.peer),
        "secret": ctx.secret.hex(),
        "payload_key": keygen.payload_key(ctx.secret).hex(),
        "host_id": ctx.host_id,
        "peer_id": ctx.peer_id,
        "role": ctx.role,
        "accept": ctx.role == "accept",
        "initiate": ctx.role == "initiate",
        "peer_values": _scope("peer_values", dict(ctx.peer_values)),
        "keys": _scope("keys", {n: _scope(f"keys.{n}", v) for n, v in prepared.keys.items()}),
        "vars": _scope("vars", dict(ctx.vars)),
        "files": _scope("files", {name: str(path) for name, path in files.items()}),
        "run_dir": str(run_dir),
        "template_dir": str(template.path),
        "python": sys.executable,
    }


def _render_string(template: Template, text: str, context: dict[str, Any], where: str) -> str:
    try:
        return template.compile(text).render(context)
    except jinja2.TemplateError as exc:
        raise LaunchError(f"{template.path / MANIFEST}: {where}: {_message(exc)}") from exc
    except Exception as exc:  # a filter or test failing on a bad value (e.g. int('x'))
        raise LaunchError(f"{template.path / MANIFEST}: {where}: {type(exc).__name__}: {exc}") from exc


def _render_file(template: Template, spec: FileSpec, context: dict[str, Any]) -> str:
    source = template.path / spec.source
    try:
        return template.environment.get_template(spec.source).render(context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, str(source))
        where = f"{source}:{line}" if line else str(source)
        raise LaunchError(f"{where}: {_message(exc)}") from exc
    except Exception as exc:
        line = _template_line(exc.__traceback__, str(source))
        where = f"{source}:{line}" if line else str(source)
        raise LaunchError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _message(exc: jinja2.TemplateError) -> str:
    return " ".join(str(exc.message or exc).split())


def _template_line(tb: TracebackType | None, filename: str) -> int | None:
    # jinja rewrites the traceback so that frames of template code carry the template's file and line.
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _write_file(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    os.fchmod(fd, mode)  # the umask must not widen or narrow what the template asked for
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
