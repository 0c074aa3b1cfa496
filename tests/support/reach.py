"""Let a normal user reach this Python and the checkout (as .ci/run does): o+x on every folder on the way, the
old modes restored afterwards (/root back to 0700)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from support import REPO


def _folders(path: str | Path) -> list[str]:
    """Every folder from ``path`` (or its folder, for a file) up to, without, /."""
    current = os.path.realpath(path)
    if not os.path.isdir(current):
        current = os.path.dirname(current)
    found = []
    while current != "/":
        found.append(current)
        current = os.path.dirname(current)
    return found


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    """The interpreter's and the checkout's folders get o+x (what .ci/run's ``reach`` does); their old modes come
    back afterwards (/root: 0700 again)."""
    folders = {f for path in (sys.executable, os.path.dirname(sys.executable), REPO) for f in _folders(path)}
    modes = {folder: stat.S_IMODE(os.stat(folder).st_mode) for folder in folders}
    try:
        for folder, mode in modes.items():
            os.chmod(folder, mode | stat.S_IXOTH)
        yield
    finally:
        for folder, mode in modes.items():
            os.chmod(folder, mode)


