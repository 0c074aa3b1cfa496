"""Render progress events: a rich live view of the phases (spinner while running, then duration and outcome),
or one JSON object per line for scripts and systemd."""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from plexus.events import PHASES, Event

_MARK = {"ok": ("✓", "green"), "fail": ("✗", "red"), "stopped": ("■", "dim"), "warn": ("!", "yellow"),
         "info": ("·", "cyan")}


class JsonLines:
    """One JSON object per event on stdout, flushed at once."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_json(), default=str) + "\n")
        self.stream.flush()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class LiveView:
    """A table of (peer, phase) rows: a spinner while running, then the outcome and its duration. Notes
    (warnings, restarts, payload ready) are printed above the table as they come."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.started = time.monotonic()
        self.live = Live(self._render(), console=self.console, refresh_per_second=12, transient=False,
                         redirect_stderr=False, redirect_stdout=False)

    def _render(self) -> Group:
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(style="bold")
        table.add_column()
        table.add_column(justify="right", style="dim")
        order: dict[str, int] = {name: i for i, name in enumerate(PHASES)}
        for (peer, name), row in sorted(self.rows.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99))):
            label = f"{name} [{peer}]" if peer else name
            if row["status"] == "start":
                mark: Any = Spinner("dots", style="cyan")
            else:
                symbol, style = _MARK.get(row["status"], ("·", "white"))
                mark = Text(symbol, style=style)
            duration = f"{row['duration'] * 1000:.0f} ms" if row.get("duration") is not None else ""
            table.add_row(mark, label, row["message"], duration)
        return Group(table)

    def __call__(self, event: Event) -> None:
        key = (event.peer or "", event.phase)
        if event.status in ("start", "ok", "fail", "stopped"):
            self.rows[key] = {"status": event.status, "message": event.message, "duration": event.duration}
        else:
            symbol, style = _MARK[event.status]
            who = f"[{event.peer}] " if event.peer else ""
            self.console.print(Text(f"{symbol} {who}{event.phase}: {event.message}", style=style))
        self.live.update(self._render())

    def __enter__(self) -> LiveView:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.stop()
