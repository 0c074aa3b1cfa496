"""Where plexus keeps what must survive a restart (the replay memory of received offers): one private folder.

``$PLEXUS_STATE_DIR`` if set, else systemd's ``$STATE_DIRECTORY`` (``StateDirectory=`` in a unit), else
``/var/lib/plexus`` for root and ``$XDG_STATE_HOME/plexus`` (default ``~/.local/state/plexus``) for a user.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    for name in ("PLEXUS_STATE_DIR", "STATE_DIRECTORY"):
        value = os.environ.get(name, "").split(":")[0]
        if value:
            return Path(value)
    if os.geteuid() == 0:
        return Path("/var/lib/plexus")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "plexus"


def private_dir(path: Path) -> Path:
    """``path``, created 0700 if missing; OSError when it cannot be."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
