"""``plexus up PROFILE``: the pipeline (``plexus.session.up``) with a live view or JSON lines, and SIGINT/SIGTERM
turned into a clean stop (the payload gets the same signal)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from plexus.events import Event, Reporter, phase
from plexus.profile.model import Profile
from plexus.session import up


async def _run_until_signal(profile: Profile, report: Reporter, peers: Sequence[str] | None) -> int:
    """Run ``up`` and turn SIGINT/SIGTERM into a clean cancellation (the payload gets the same signal)."""
    import signal

    loop = asyncio.get_running_loop()
    task = loop.create_task(up(profile, report, peers=peers))
    received: list[str] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        def stop(name: str = sig.name) -> None:
            received.append(name)
            task.cancel(name)
        loop.add_signal_handler(sig, stop)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        report(Event("session", "info", f"stopped by {received[0]}"))
        if profile.role == "accept":
            return 0
        return 130 if received[0] == "SIGINT" else 143


def _with_forwards(profile: Profile, args: object) -> Profile:
    """``-L``/``-R``/``-D`` from the command line, added to the forward template's vars."""
    import dataclasses

    from plexus.errors import ProfileError

    given = {name: list(getattr(args, name, None) or []) for name in ("local", "remote", "socks")}
    if not any(given.values()):
        return profile
    if Path(profile.payload.template).name != "forward":
        raise ProfileError(f"{profile.name}: -L, -R and -D need the forward template, not "
                           f"{profile.payload.template!r}", hint="set payload.template: forward")
    from plexus.forward.spec import LocalForward, RemoteForward, Socks

    for (flag, name), parse in zip((("-L", "local"), ("-R", "remote"), ("-D", "socks")),
                                   (LocalForward.parse, RemoteForward.parse, Socks.parse), strict=True):
        for item in given[name]:
            try:
                parse(item)
            except ValueError as error:
                raise ProfileError(f"{flag} {item}: {error}", hint="e.g. -L 2222:127.0.0.1:22, -D 1080") from None
    vars = dict(profile.payload.vars)
    for name, items in given.items():
        vars[name] = [*(vars.get(name) or []), *items]
    return dataclasses.replace(profile, payload=dataclasses.replace(profile.payload, vars=vars))


def run_up(args: object) -> int:
    from plexus.cli.ui import JsonLines, LiveView
    from plexus.profile import load

    json_mode = bool(getattr(args, "json", False))
    view: JsonLines | LiveView = JsonLines() if json_mode else LiveView()
    payload_log = logging.getLogger("plexus.payload")
    if not getattr(args, "quiet", False):
        payload_log.setLevel(logging.INFO)
        if isinstance(view, LiveView):
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(console=view.console, show_path=False, show_level=False)
        else:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
        payload_log.addHandler(handler)
        payload_log.propagate = False
    with view:
        with phase(view, "profile", str(getattr(args, "profile", ""))) as result:
            profile = _with_forwards(load(str(getattr(args, "profile", ""))), args)
            result["message"] = f"{profile.name}: {profile.role} {', '.join(p.id for p in profile.peers)}"
        return asyncio.run(_run_until_signal(profile, view, getattr(args, "peers", None)))
