"""Render progress events: a rich live view of the phases (spinner while running, then duration and outcome) on a
terminal, one plain line per event off one (pipes, files, journald), or one JSON object per line for scripts."""

from __future__ import annotations

import json
import logging
import sys
import threading
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


LEVELS = {"fail": "ERROR", "warn": "WARN"}  # any other status: INFO


def timestamp(when: float) -> str:
    """Local time with milliseconds: ``2025-01-31 14:03:07.042``."""
    seconds = int(when)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{int((when - seconds) * 1000):03d}"


class PlainLines:
    """One line per event, written and flushed as it happens: ``TIMESTAMP LEVEL [peer] phase: message``, with a
    phase's duration at its end. No colour, no spinner, no wrapping. ``handler()`` gives the payload's output
    lines the same prefix, each passed through whole on a line of its own."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()  # whole lines, also from a logging call in another thread

    def line(self, when: float, level: str, text: str) -> None:
        with self._lock:
            self.stream.write(f"{timestamp(when)} {level} {text}\n")
            self.stream.flush()

    def __call__(self, event: Event) -> None:
        text = " ".join((event.message or event.status).splitlines())
        if event.duration is not None and event.status != "start":
            text += f" ({event.duration * 1000:.0f} ms)"
        who = f"[{event.peer}] " if event.peer else ""
        self.line(event.time, LEVELS.get(event.status, "INFO"), f"{who}{event.phase}: {text}")

    def handler(self) -> logging.Handler:
        return _LineHandler(self)

    def __enter__(self) -> PlainLines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _LineHandler(logging.Handler):
    def __init__(self, lines: PlainLines) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = {"WARNING": "WARN", "CRITICAL": "ERROR"}.get(record.levelname, record.levelname)
            self.lines.line(record.created, level, record.getMessage())
        except Exception:
            self.handleError(record)


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
