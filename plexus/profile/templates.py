"""The payload template a profile names: it exists (a user's template next to the profile or in
``$XDG_CONFIG_HOME/plexus/templates`` hides the built-in one) and every peer gets the vars it needs."""

from __future__ import annotations

from typing import Any

from plexus.profile.checks import get, peers
from plexus.profile.document import Document


def check_template(document: Document) -> None:
    from plexus.errors import LaunchError
    from plexus.launch.manifest import find_template

    path = ("payload", "template")
    name = get(document.data, path, str)
    if not name:
        return
    try:
        template = find_template(name, document.file_of(path).parent)
    except LaunchError as error:
        document.problem(path, error.message, error.hint)
        return
    common = get(document.data, ("payload", "vars"), dict) or {}
    entries = peers(document.data)
    missing_for: dict[str, list[tuple[int, Any]]] = {}
    for index, peer in entries:
        own = peer.get("vars") if isinstance(peer.get("vars"), dict) else {}
        given = {**common, **own}
        for need in template.needs:
            if given.get(need) in (None, ""):
                missing_for.setdefault(need, []).append((index, peer))
    wanted = ", ".join(template.needs)
    for need in template.needs:
        lacking = missing_for.get(need, [])
        if not entries and common.get(need) in (None, ""):
            lacking = [(-1, None)]
        if not lacking:
            continue
        if len(lacking) == max(len(entries), 1):  # nobody has it: one line, where common vars go
            document.problem(("payload", "vars", need), f"template {name} needs variable '{need}'",
                             f"it needs {wanted}; add {need}: ... under payload.vars")
            continue
        for index, peer in lacking:
            where = ("peers", index, "vars") if "vars" in peer else ("peers", index)
            document.problem((*where, need) if "vars" in peer else where,
                             f"template {name} needs variable '{need}' for peer {peer.get('id', index)}",
                             "add it under this peer's vars or under payload.vars")
