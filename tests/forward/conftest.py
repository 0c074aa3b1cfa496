"""Fixtures of the forward payload tests (helpers: fwd_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fwd_support import Pairs

from plexus.forward import Listeners


@pytest.fixture
async def pairs() -> AsyncIterator[Pairs]:
    made = Pairs()
    yield made
    await made.close()


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    held = Listeners(hold=3.0)
    yield held
    await held.close()
