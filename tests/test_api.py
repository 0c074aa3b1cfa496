"""The public library API: ``plexus.__all__`` is pinned (a change here is a change for every library user), each
name resolves, and ``import plexus`` stays light (the command line pays for every import)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import plexus

API = ["Carrier", "Event", "LabError", "LaunchError", "NatError", "Peer", "PlexusError", "Profile", "ProfileError",
       "PunchError", "RelayError", "RendezvousError", "Reporter", "__version__", "load_profile", "up",
       "validate_profile"]


def test_the_exported_names_are_pinned() -> None:
    assert plexus.__all__ == API
    for name in API:
        assert getattr(plexus, name) is not None, name
    assert issubclass(plexus.PunchError, plexus.PlexusError) and plexus.PunchError.exit_code == 5
    assert issubclass(plexus.RelayError, plexus.PunchError) and plexus.RelayError.exit_code == 5
    assert set(API) <= set(dir(plexus))


def test_up_takes_a_profile_or_a_name_and_an_optional_reporter() -> None:
    signature = inspect.signature(plexus.up)
    assert list(signature.parameters) == ["profile", "report", "peers", "carrier"]
    assert signature.parameters["report"].default is None
    assert signature.parameters["peers"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.iscoroutinefunction(plexus.up) and plexus.up.__doc__ and "asyncio.run" in plexus.up.__doc__


def test_import_plexus_is_light() -> None:
    code = ("import sys, plexus; "
            "print(sorted(m for m in sys.modules if m.startswith(('plexus.', 'cryptography', 'aio'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
