"""The payload template a profile names: it exists (a user's template next to the profile or in
``$XDG_CONFIG_HOME/plexus/templates`` hides the built-in one) and every peer gets the vars it needs.

A user's template is loaded in full by the launcher's ``find_template`` (its Jinja is compiled, so syntax
errors show here). A built-in template is tested with plexus itself; for it only the manifest's ``needs`` is
read, which keeps ``plexus validate`` from importing jinja2 (startup time)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from plexus.profile.checks import get, peers
from plexus.profile.document import Document

MANIFEST = "template.yaml"


def template_needs(name: str, profile_dir: Path) -> list[str]:
    """The vars template ``name`` needs, as seen from a profile in ``profile_dir``; LaunchError if missing."""
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
            needs = raw.get("needs", []) if isinstance(raw, dict) else []
            return [str(need) for need in needs]
    from plexus.launch.manifest import find_template

    return list(find_template(name, profile_dir).needs)


def check_template(document: Document) -> None:
    from plexus.errors import LaunchError

    path = ("payload", "template")
    name = get(document.data, path, str)
    if not name:
        return
    try:
        needs = template_needs(name, document.file_of(path).parent)
    except LaunchError as error:
        document.problem(path, error.message, error.hint)
        return
    except (OSError, ValueError, RuntimeError) as error:  # a name too long, ~nosuchuser, ...
        document.problem(path, f"cannot look up template {name}: {getattr(error, 'strerror', None) or error}")
        return
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
