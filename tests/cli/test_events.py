"""Progress events: a phase that is cancelled (Ctrl-C, a session replaced) is reported stopped, not failed; the
mail libraries' chatter stays out of -v."""

from __future__ import annotations

import asyncio
import logging

import pytest

from plexus.cli import configure_logging
from plexus.events import Event, phase


async def test_a_cancelled_phase_is_stopped_not_failed() -> None:
    seen: list[Event] = []

    async def punch() -> None:
        with phase(seen.append, "punch", "to 198.18.12.2:4000", "alice"):
            await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(punch())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(e.phase, e.status, e.message) for e in seen] == [("punch", "start", "to 198.18.12.2:4000"),
                                                              ("punch", "stopped", "stopped")]
    with pytest.raises(ValueError), phase(seen.append, "launch"):
        raise ValueError("no such program")
    assert (seen[-1].status, seen[-1].message) == ("fail", "no such program")


@pytest.mark.parametrize(("verbose", "imap_level"), [(0, logging.WARNING), (1, logging.WARNING), (2, logging.DEBUG)])
def test_mail_library_noise_is_for_minus_vv_only(verbose: int, imap_level: int) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        root.handlers.clear()
        logging.getLogger("aioimaplib").setLevel(logging.NOTSET)
        configure_logging(verbose, quiet=False)
        assert logging.getLogger("aioimaplib").getEffectiveLevel() == imap_level
        assert logging.getLogger("plexus.rendezvous").isEnabledFor(logging.INFO) == (verbose >= 1)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("aioimaplib").setLevel(logging.NOTSET)
