"""plexus: connect two machines behind NAT with no VPN server and no port forwarding.

The pipeline, one subpackage per stage: ``profile`` -> ``nat`` -> ``rendezvous`` -> ``punch`` -> ``launch``,
driven by ``plexus.session.up``; ``cli`` is the command line over it. From Python::

    import asyncio
    import plexus

    profile = plexus.load_profile("laptop")            # a name on the profile path, or a file
    code = asyncio.run(plexus.up(profile, report=print))  # every progress Event goes to report

Errors are ``PlexusError`` subclasses with a one-line message, a ``hint`` and the CLI's ``exit_code``.
The names below are imported when first used, so that ``import plexus`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Carrier",
    "Event",
    "LabError",
    "LaunchError",
    "NatError",
    "Peer",
    "PlexusError",
    "Profile",
    "ProfileError",
    "PunchError",
    "RelayError",
    "RendezvousError",
    "Reporter",
    "__version__",
    "load_profile",
    "up",
    "validate_profile",
]

_WHERE = {
    "up": ("plexus.session", "up"),
    "load_profile": ("plexus.profile", "load"),
    "validate_profile": ("plexus.profile", "validate"),
    "Profile": ("plexus.profile.model", "Profile"),
    "Peer": ("plexus.profile.model", "Peer"),
    "Event": ("plexus.events", "Event"),
    "Reporter": ("plexus.events", "Reporter"),
    "Carrier": ("plexus.rendezvous.base", "Carrier"),
    **{name: ("plexus.errors", name) for name in ("PlexusError", "ProfileError", "NatError", "RendezvousError",
                                                 "PunchError", "RelayError", "LaunchError", "LabError")},
}

if TYPE_CHECKING:
    from plexus.errors import (
        LabError,
        LaunchError,
        NatError,
        PlexusError,
        ProfileError,
        PunchError,
        RelayError,
        RendezvousError,
    )
    from plexus.events import Event, Reporter
    from plexus.profile import load as load_profile
    from plexus.profile import validate as validate_profile
    from plexus.profile.model import Peer, Profile
    from plexus.rendezvous.base import Carrier
    from plexus.session import up


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'plexus' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
