"""Typed progress events: every stage reports phases through these; the CLI renders them (rich or JSON lines)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

Status = Literal["start", "ok", "fail", "stopped", "info", "warn"]  # stopped: cancelled (Ctrl-C, replaced)

# Phases of `plexus up`, in pipeline order (the live view shows them in this order). "mailbox" / "rendezvous":
# connecting the email / any other carrier; "session": the outcome of one peer's session (failed, restarted).
Phase = Literal["profile", "nat", "relay", "mailbox", "rendezvous", "offer-sent", "offer-received", "punch", "launch",
                "payload", "session"]
PHASES: tuple[Phase, ...] = get_args(Phase)


@dataclass
class Event:
    phase: Phase
    status: Status
    message: str = ""
    peer: str | None = None
    duration: float | None = None  # seconds, for "ok"/"fail" of a phase that had a "start"
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}, "")}


Reporter = Callable[[Event], None]


def discard(_event: Event) -> None:
    """A reporter that drops every event (library use without a UI)."""


@contextmanager
def phase(report: Reporter, name: Phase, message: str = "", peer: str | None = None) -> Iterator[dict[str, Any]]:
    """Report start, then ok (with duration) or fail around a block. The yielded dict becomes the ok event's
    data; put a "message" key in it to replace the ok message."""
    report(Event(name, "start", message, peer))
    started = time.monotonic()
    result: dict[str, Any] = {}
    try:
        yield result
    except asyncio.CancelledError:  # stopped (Ctrl-C, SIGTERM) or replaced by a newer session: not a failure
        report(Event(name, "stopped", "stopped", peer, time.monotonic() - started))
        raise
    except BaseException as error:
        text = str(error) or type(error).__name__
        report(Event(name, "fail", text, peer, time.monotonic() - started))
        raise
    done_message = str(result.pop("message", message))
    report(Event(name, "ok", done_message, peer, time.monotonic() - started, result))
