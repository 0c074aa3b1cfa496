"""``plexus up PROFILE``: the pipeline (``plexus.session.up``) with a live view (a terminal), plain lines (off one)
or JSON lines; SIGINT/SIGTERM turned into a clean stop (the payload gets the same signal); the service manager
told READY/STATUS/STOPPING (sd_notify) when ``$NOTIFY_SOCKET`` is set. The last event always says why plexus
exits: a ``session`` event without a peer whose data holds the ``exit_code``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from plexus.errors import PlexusError, one_line
from plexus.events import Event, Reporter, phase
from plexus.profile.model import Profile
from plexus.session import up

if TYPE_CHECKING:
    from plexus.cli.ui import JsonLines, LiveView, PlainLines
    from plexus.service.notify import Notifier
    from plexus.service.status import StatusBoard


async def _run_until_signal(profile: Profile, report: Reporter, peers: Sequence[str] | None,
                            notifier: Notifier, board: StatusBoard | None = None) -> tuple[int, str | None]:
    """Run ``up`` and turn SIGINT/SIGTERM into a clean cancellation (the payload gets the same signal): the exit
    code, and the signal's name when one stopped it. WATCHDOG=1 pings go out meanwhile when asked for."""
    import signal

    loop = asyncio.get_running_loop()
    task = loop.create_task(up(profile, report, peers=peers))
    received: list[str] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        def stop(name: str = sig.name) -> None:
            if not received:  # at once: the payload may take a few seconds to stop
                notifier.stopping(f"stopping: {name}")
            received.append(name)
            task.cancel(name)
        loop.add_signal_handler(sig, stop)
    watchdog = notifier.start_watchdog()
    from plexus.service import status

    server = await status.serve(board, profile.name) if board is not None else None  # plexus status
    try:
        return await task, None
    except asyncio.CancelledError:
        if not received:
            raise
        if profile.role == "accept":
            return 0, received[0]
        return (130 if received[0] == "SIGINT" else 143), received[0]
    finally:
        if watchdog is not None:
            watchdog.cancel()
        await status.stop_serving(server, profile.name)


def _outcome(code: int, stopped_by: str | None) -> Event:
    """The last event of a run that returned: stopped by a signal, or ended with this exit code."""
    if stopped_by is not None:
        return Event("session", "stopped", f"stopped by {stopped_by} (exit {code})",
                     data={"exit_code": code, "signal": stopped_by})
    return Event("session", "ok" if code == 0 else "fail", f"ended (exit {code})", data={"exit_code": code})


def _failure(error: BaseException) -> Event | None:
    """The last event of a run that raised (the same exit code ``plexus.cli.main`` returns), or None."""
    if isinstance(error, PlexusError):
        return Event("session", "fail", f"{one_line(error)} (exit {error.exit_code})",
                     data={"exit_code": error.exit_code})
    if isinstance(error, KeyboardInterrupt):
        return Event("session", "stopped", "interrupted (exit 130)", data={"exit_code": 130, "signal": "SIGINT"})
    if isinstance(error, Exception) and not isinstance(error, BrokenPipeError):
        return Event("session", "fail", f"internal error: {type(error).__name__}: {one_line(error)} (exit 70)",
                     data={"exit_code": 70})
    return None


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


def _view(args: object) -> JsonLines | LiveView | PlainLines:
    from plexus.cli.ui import JsonLines, LiveView, PlainLines

    if getattr(args, "json", False):
        return JsonLines()
    return LiveView() if sys.stdout.isatty() else PlainLines()


def _payload_output(view: JsonLines | LiveView | PlainLines) -> None:
    """The payload's output lines (the ``plexus.payload`` logger): above the live view, as plain lines with
    the events' prefix, or (beside JSON on stdout) bare on stderr."""
    from plexus.cli.ui import LiveView, PlainLines

    payload_log = logging.getLogger("plexus.payload")
    payload_log.setLevel(logging.INFO)
    if isinstance(view, LiveView):
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=view.console, show_path=False, show_level=False)
    elif isinstance(view, PlainLines):
        handler = view.handler()
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    payload_log.addHandler(handler)
    payload_log.propagate = False


def _ready_on_launch(profile: Profile) -> bool:
    """Whether the payload never says it is ready (no ``ready`` pattern, not built in): then it is at launch."""
    from plexus.session.connect import template_of

    try:
        template = template_of(profile)
    except PlexusError:
        return False  # up() says why
    return template.builtin is None and not template.ready


def run_up(args: object) -> int:
    from plexus.profile import load
    from plexus.service.notify import Notifier, ServiceReporter
    from plexus.service.status import StatusBoard

    view = _view(args)
    if not getattr(args, "quiet", False):
        _payload_output(view)
    notifier = Notifier.from_environ(unset=True)  # the payloads must not notify in our name
    board = StatusBoard(view)
    report = ServiceReporter(board, notifier)
    name = str(getattr(args, "profile", ""))
    with view:
        try:
            with phase(report, "profile", name) as result:
                profile = _with_forwards(load(name), args)
                result["message"] = f"{profile.name}: {profile.role} {', '.join(p.id for p in profile.peers)}"
            report.role, report.ready_on_launch = profile.role, _ready_on_launch(profile)
            board.profile, board.role = profile.name, profile.role
            code, stopped_by = asyncio.run(_run_until_signal(profile, report, getattr(args, "peers", None),
                                                             notifier, board))
        except BaseException as error:
            last = _failure(error)
            try:
                if last is not None:
                    report(last)
            finally:
                notifier.stopping()
            raise
        try:
            report(_outcome(code, stopped_by))
        finally:
            notifier.stopping()
        return code
