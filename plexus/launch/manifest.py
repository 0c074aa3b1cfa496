"""Template manifests (``templates/exec/<name>/template.yaml``): finding, parsing and validating them.

A template is a directory: ``template.yaml`` plus the Jinja sources of the files it renders. The manifest
format and the context the Jinja text sees are documented in ``templates/exec/README.md``.
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from plexus import resources
from plexus.errors import LaunchError, one_line
from plexus.launch import keys as keygen
from plexus.launch import varkinds

MANIFEST = "template.yaml"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FIELDS = {"description", "needs", "vars", "keys", "exports", "files", "argv", "env", "ready", "ready_timeout",
           "failure", "builtin"}
BUILTINS = ("forward",)  # payloads plexus runs itself, in its own process, on the punched port
_DEFAULT_READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class FileSpec:
    name: str  # file name inside the run directory; the context's files.<name> is its path
    source: str  # Jinja source, relative to the template directory
    mode: int = 0o600


@dataclass
class Template:
    name: str
    path: Path  # the template directory
    description: str
    needs: list[str] = field(default_factory=list)  # payload vars the profile must give
    vars: dict[str, str] = field(default_factory=dict)  # var name -> kind (varkinds.KINDS); others: one-line text
    exports: dict[str, str] = field(default_factory=dict)  # public values sent to the peer: name -> Jinja text
    keys: dict[str, str] = field(default_factory=dict)  # per-session key material: name -> kind
    files: list[FileSpec] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)  # each element rendered on its own; never a shell string
    builtin: str | None = None  # instead of argv: a payload plexus runs itself (BUILTINS)
    env: dict[str, str] = field(default_factory=dict)  # added to plexus's environment for the program
    ready: str | None = None  # regex on the program's output lines that means "up"
    ready_timeout: float = _DEFAULT_READY_TIMEOUT  # seconds the runner waits for `ready` before giving up
    # regex on output lines that mean the run failed even if the exit code says 0 (openvpn exits 0 on tls-exit)
    failure: str | None = None
    environment: jinja2.Environment = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    _compiled: dict[str, jinja2.Template] = field(repr=False, compare=False, default_factory=dict)

    def compile(self, text: str) -> jinja2.Template:
        """A Jinja text from the manifest, compiled once (render runs right after the handshake)."""
        if text not in self._compiled:
            self._compiled[text] = self.environment.from_string(text)
        return self._compiled[text]

    def where(self, part: str) -> str:
        return f"template {self.name} ({self.path / part})"


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose message names the full variable path (``vars.tunnel is undefined``)."""

    @property
    def _undefined_message(self) -> str:
        obj = self._undefined_obj
        if self._undefined_hint is None and isinstance(obj, Scope):
            return f"{obj.path}.{self._undefined_name} is undefined"
        return str(super()._undefined_message)


class Scope(dict[str, Any]):
    """A dict in the template context that knows its own name, for error messages."""

    def __init__(self, path: str, items: dict[str, Any]) -> None:
        super().__init__(items)
        self.path = path


def address(value: object) -> str:
    """Jinja filter: ``198.19.0.1/30`` -> ``198.19.0.1`` (tunnel vars may carry a prefix length)."""
    text = str(value)
    if not isinstance(value, str) or not varkinds.is_address(text):
        raise ValueError(f"the address filter needs {varkinds.KINDS['address']}, got {varkinds.describe(value)}")
    return text.split("/", 1)[0]


def hex_b64(value: object) -> str:
    """Jinja filter: hex text -> base64 (``payload_key | hex_b64`` is a WireGuard PresharedKey)."""
    try:
        return base64.b64encode(bytes.fromhex(str(value))).decode()
    except ValueError:
        raise ValueError(f"hex_b64 needs hex text, got {len(str(value))} characters that are not hex") from None


def make_environment(template_dir: Path) -> jinja2.Environment:
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(template_dir)),
        undefined=_Undefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,  # a line holding only {% if %} leaves no blank line behind
        lstrip_blocks=True,
    )
    env.filters["address"] = address
    env.filters["hex_b64"] = hex_b64
    return env


def user_templates_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "plexus" / "templates"


def search_dirs(profile_dir: Path | None = None) -> list[Path]:
    """Where template names are looked up, first match wins: next to the profile, the user's, built-in."""
    dirs = [profile_dir / "templates"] if profile_dir is not None else []
    dirs.append(user_templates_dir())
    with contextlib.suppress(FileNotFoundError):
        dirs.append(resources.builtin_templates_dir())
    return dirs


def find_template(name: str, profile_dir: Path | None = None) -> Template:
    """A template by path (anything with a ``/`` or an existing directory) or by name in :func:`search_dirs`."""
    if "/" in name or name.startswith("."):
        path = Path(name).expanduser()
        if profile_dir is not None and not path.is_absolute():
            path = profile_dir / path
        if not (path / MANIFEST).is_file():
            raise LaunchError(f"template directory {path} has no {MANIFEST}")
        return load_template(path)
    if not _FILE_NAME.match(name):
        raise LaunchError(f"template name {name!r} is not a plain name", hint="give a name or a path")
    dirs = search_dirs(profile_dir)
    for directory in dirs:
        if (directory / name / MANIFEST).is_file():
            return load_template(directory / name)
    known = sorted({t.name for t in list_templates(profile_dir)})
    raise LaunchError(
        f"template {name!r} not found in {', '.join(str(d) for d in dirs)}",
        hint=f"known: {', '.join(known)}" if known else None,
    )


def list_templates(profile_dir: Path | None = None) -> list[Template]:
    """Every template visible by name, one per name (a user's one hides the built-in one), sorted by name.
    Broken user templates are skipped here; :func:`find_template` reports them."""
    seen: dict[str, Template] = {}
    for directory in search_dirs(profile_dir):
        if not directory.is_dir():
            continue
        for candidate in sorted(directory.iterdir()):
            if candidate.name in seen or not (candidate / MANIFEST).is_file():
                continue
            try:
                seen[candidate.name] = load_template(candidate)
            except LaunchError:
                continue
    return [seen[name] for name in sorted(seen)]


def load_template(path: Path) -> Template:
    """Parse and check ``path/template.yaml`` and compile every Jinja text in it (syntax errors show here)."""
    path = Path(path)
    manifest = path / MANIFEST
    try:
        raw = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LaunchError(f"cannot read {manifest}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise LaunchError(f"{manifest}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{manifest}:{mark.line + 1}:{mark.column + 1}" if mark else str(manifest)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise LaunchError(one_line(f"{where}: {problem}")) from exc
    template = _parse(path, manifest, raw)
    _compile_all(template)
    return template


def _parse(path: Path, manifest: Path, raw: object) -> Template:
    def bad(field_name: str, problem: str) -> LaunchError:
        return LaunchError(one_line(f"{manifest}: {field_name}: {problem}"))

    if not isinstance(raw, dict):
        raise LaunchError(f"{manifest}: must be a mapping with description and argv")
    unknown = sorted(set(map(str, raw)) - _FIELDS)
    if unknown:
        close = difflib.get_close_matches(unknown[0], _FIELDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(_FIELDS))}"
        raise bad(repr(unknown[0]), f"unknown field ({hint})")
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise bad("description", "required, a one-line text")
    needs = _string_list(raw.get("needs", []), "needs", bad)
    for need in needs:
        if not _NAME.match(need):
            raise bad("needs", f"{need!r} is not a variable name")
    var_kinds = _string_dict(raw.get("vars", {}), "vars", bad)
    for var_name, kind in var_kinds.items():
        if not _NAME.match(var_name):
            raise bad("vars", f"{var_name!r} is not a variable name")
        if kind not in varkinds.KINDS:
            raise bad(f"vars.{var_name}", f"unknown kind {kind!r} (one of {', '.join(varkinds.KINDS)})")
    key_kinds = _string_dict(raw.get("keys", {}), "keys", bad)
    for key_name, kind in key_kinds.items():
        if not _NAME.match(key_name):
            raise bad("keys", f"{key_name!r} is not a name")
        if kind not in keygen.KINDS:
            raise bad(f"keys.{key_name}", f"unknown kind {kind!r} (one of {', '.join(keygen.KINDS)})")
    exports = _string_dict(raw.get("exports", {}), "exports", bad)
    for export in exports:
        if not _NAME.match(export):
            raise bad("exports", f"{export!r} is not a name")
    builtin = raw.get("builtin")
    if builtin is not None and builtin not in BUILTINS:
        raise bad("builtin", f"unknown built-in payload {builtin!r} (one of {', '.join(BUILTINS)})")
    argv = _string_list(raw.get("argv", []), "argv", bad)
    if builtin is not None and argv:
        raise bad("argv", "a builtin payload takes no argv")
    if builtin is None and not argv:
        raise bad("argv", "required, a non-empty list of strings (the program and its arguments)")
    env = _string_dict(raw.get("env", {}), "env", bad)
    ready, failure = _regex(raw, "ready", bad), _regex(raw, "failure", bad)
    return Template(
        name=path.name,
        path=path,
        description=description.strip(),
        needs=needs,
        vars=var_kinds,
        exports=exports,
        keys=key_kinds,
        files=_parse_files(path, raw.get("files", []), bad),
        argv=argv,
        builtin=builtin,
        env=env,
        ready=ready,
        failure=failure,
        ready_timeout=_seconds(raw.get("ready_timeout", _DEFAULT_READY_TIMEOUT), bad),
        environment=make_environment(path),
    )


def _parse_files(path: Path, raw: object, bad: Any) -> list[FileSpec]:
    if not isinstance(raw, list):
        raise bad("files", "must be a list of {name, source, mode}")
    files: list[FileSpec] = []
    for index, item in enumerate(raw):
        where = f"files[{index}]"
        if not isinstance(item, dict) or set(map(str, item)) - {"name", "source", "mode"}:
            raise bad(where, "must be a mapping with name, source and optional mode")
        name, source, mode = item.get("name"), item.get("source"), item.get("mode", "0600")
        if not isinstance(name, str) or not _FILE_NAME.match(name):
            raise bad(f"{where}.name", "a plain file name (letters, digits, . _ -), no directories")
        if any(spec.name == name for spec in files):
            raise bad(f"{where}.name", f"{name!r} is listed twice")
        if not isinstance(source, str) or not source or source.startswith("/") or ".." in Path(source).parts:
            raise bad(f"{where}.source", "a file inside the template directory")
        if not (path / source).is_file():
            raise bad(f"{where}.source", f"{path / source} does not exist")
        if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
            raise bad(f"{where}.mode", 'a quoted octal text such as "0600"')
        if int(mode, 8) & 0o022:
            raise bad(f"{where}.mode", f"{mode} lets others write the file; use 0600, 0640 or 0700")
        files.append(FileSpec(name=name, source=source, mode=int(mode, 8)))
    return files


def _regex(raw: dict[Any, Any], name: str, bad: Any) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise bad(name, "must be a regular expression (text) or absent")
    try:
        re.compile(value)
    except re.error as exc:
        raise bad(name, f"bad regular expression: {exc}") from exc
    return value


def _string_list(raw: object, name: str, bad: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, str | int | float) for item in raw):
        raise bad(name, "must be a list of strings")
    return [str(item) for item in raw]


def _string_dict(raw: object, name: str, bad: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str | int | float) for v in raw.values()):
        raise bad(name, "must be a mapping of names to strings")
    return {str(k): str(v) for k, v in raw.items()}


def _seconds(raw: object, bad: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw > 0:
        return float(raw)
    if isinstance(raw, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*", raw)
        if match and float(match[1]) > 0:
            return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[match[2] or "s"]
    raise bad("ready_timeout", "a positive duration such as 15s")


def _compile_all(template: Template) -> None:
    env = template.environment
    texts = {f"argv[{i}]": text for i, text in enumerate(template.argv)}
    texts |= {f"env.{k}": text for k, text in template.env.items()}
    texts |= {f"exports.{k}": text for k, text in template.exports.items()}
    for where, text in texts.items():
        try:
            template.compile(text)
        except jinja2.TemplateSyntaxError as exc:
            raise LaunchError(one_line(f"{template.path / MANIFEST}: {where}: {exc.message}")) from exc
    for spec in template.files:
        try:
            env.get_template(spec.source)
        except jinja2.TemplateSyntaxError as exc:
            raise LaunchError(one_line(f"{template.path / spec.source}:{exc.lineno}: {exc.message}")) from exc
        except UnicodeDecodeError:
            raise LaunchError(f"{template.path / spec.source}: not UTF-8 text") from None
