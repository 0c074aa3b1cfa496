"""The payload template a profile names: it exists (a user's template next to the profile or in
``$XDG_CONFIG_HOME/plexus/templates`` hides the built-in one), every peer gets the vars it needs, and every
var is of the kind the manifest declares for it (an undeclared one: text without control characters), so
that no var can inject lines into a config file.

A user's template is loaded in full by the launcher's ``find_template`` (its Jinja is compiled, so syntax
errors show here). A built-in template is tested with plexus itself; for it only the manifest's ``needs``
and ``vars`` are read, which keeps ``plexus validate`` from importing jinja2 (startup time)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from plexus.profile.document import Document
from plexus.profile.fields import get, peers
from plexus.profile.problems import FieldPath

MANIFEST = "template.yaml"


def template_needs(name: str, profile_dir: Path) -> list[str]:
    """The vars template ``name`` needs, as seen from a profile in ``profile_dir``; LaunchError if missing."""
    return template_vars(name, profile_dir)[0]


def template_vars(name: str, profile_dir: Path) -> tuple[list[str], dict[str, str]]:
    """Template ``name``'s needed vars and declared var kinds; LaunchError if it is missing or broken."""
    import os

    from plexus.resources import builtin_templates_dir

    plain = "/" not in name and not name.startswith(".")
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    user_dirs = [profile_dir / "templates", Path(config_home) / "plexus" / "templates"]
    if plain and not any((d / name / MANIFEST).is_file() for d in user_dirs):
        manifest = builtin_templates_dir() / name / MANIFEST
        if manifest.is_file():
            import yaml

            raw = yaml.load(manifest.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader",
                                                                                 yaml.SafeLoader))
            raw = raw if isinstance(raw, dict) else {}
            return [str(need) for need in raw.get("needs", [])], {str(k): str(v) for k, v in
                                                                  (raw.get("vars") or {}).items()}
    from plexus.launch.manifest import find_template

    template = find_template(name, profile_dir)
    return list(template.needs), dict(template.vars)


def check_var_values(document: Document, name: str, kinds: dict[str, str]) -> None:
    """A problem at each bad var, in the file (a base's, maybe) where it was written."""
    from plexus.launch.varkinds import var_problems

    places: list[tuple[FieldPath, Any]] = [(("payload", "vars"), get(document.data, ("payload", "vars"), dict))]
    places += [(("peers", index, "vars"), peer.get("vars")) for index, peer in peers(document.data)]
    for where, given in places:
        if not isinstance(given, dict):
            continue
        for problem in var_problems(kinds, given):
            document.problem((*where, *problem.path), problem.message, problem.hint(name))


def check_template(document: Document, *, base: bool = False) -> None:
    from plexus.errors import LaunchError

    path = ("payload", "template")
    name = get(document.data, path, str)
    if base or not name:  # a base's vars are checked as text here, by kind in the profiles extending it
        check_var_values(document, name or "", {})
        return
    try:
        needs, kinds = template_vars(name, document.file_of(path).parent)
    except LaunchError as error:
        document.problem(path, error.message, error.hint)
        check_var_values(document, name, {})
        return
    except (OSError, ValueError, RuntimeError) as error:  # a name too long, ~nosuchuser, ...
        document.problem(path, f"cannot look up template {name}: {getattr(error, 'strerror', None) or error}")
        check_var_values(document, name, {})
        return
    check_var_values(document, name, kinds)
    if Path(name).name == "forward" and kinds.get("expose") == "list":
        check_forward_specs(document)
    common = get(document.data, ("payload", "vars"), dict) or {}
    entries = peers(document.data)
    missing_for: dict[str, list[tuple[int, Any]]] = {}
    for index, peer in entries:
        own = peer.get("vars")
        given = {**common, **(own if isinstance(own, dict) else {})}
        for need in needs:
            if given.get(need) in (None, ""):
                missing_for.setdefault(need, []).append((index, peer))
    wanted = ", ".join(needs)
    for need in needs:
        lacking = missing_for.get(need, [])
        if not entries and common.get(need) in (None, ""):
            lacking = [(-1, {})]
        if not lacking:
            continue
        if len(lacking) == max(len(entries), 1):  # nobody has it: one line, where common vars go
            close = difflib.get_close_matches(need, list(common), n=1, cutoff=0.6)
            hint = f"you wrote '{close[0]}': did you mean '{need}'?" if close else \
                f"it needs {wanted}; add {need}: ... under payload.vars"
            document.problem(("payload", "vars", need), f"template {name} needs variable '{need}'", hint)
            continue
        for index, peer in lacking:
            has_vars = "vars" in peer
            where = ("peers", index, "vars", need) if has_vars else ("peers", index)
            document.problem(where, f"template {name} needs variable '{need}' for peer {peer.get('id', index)}",
                             "add it under this peer's vars or under payload.vars")


def check_forward_specs(document: Document) -> None:
    """The forward template's -L / -R / -D / expose entries parse (else ``up`` would fail only at launch)."""
    from plexus.forward.spec import LocalForward, RemoteForward, Socks, Target

    parsers = {"local": LocalForward.parse, "remote": RemoteForward.parse, "socks": Socks.parse,
               "expose": Target.parse}
    places: list[FieldPath] = [("payload", "vars")] + [("peers", i, "vars") for i, _ in peers(document.data)]
    for where in places:
        for name, parse in parsers.items():
            for index, item in enumerate(get(document.data, (*where, name), list) or []):
                if not isinstance(item, str):
                    continue
                try:
                    parse(item)
                except ValueError as error:
                    document.problem((*where, name, index), str(error),
                                     "local/remote: [bind:]port:host:hostport; socks: [bind:]port; expose: host:port")
