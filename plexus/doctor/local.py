"""Doctor: STUN reachable and the NAT suitable for punching; the payload's program installed."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable

from plexus.doctor.check import Check
from plexus.errors import PlexusError
from plexus.profile.model import Profile

NETWORK_TIMEOUT = 10.0


async def check_stun(profile: Profile) -> list[Check]:
    try:
        from plexus.nat import discover, punchable
        from plexus.udp import UdpPort
    except ImportError:
        return [Check("STUN", "n/a", "not available in this build")]
    if not profile.stun.servers:
        return [Check("STUN", "fail", "no STUN server configured", "set stun.servers")]
    from plexus.profile.model import Endpoint

    try:
        port = await UdpPort.bind(Endpoint(profile.stun.bind.host, 0))  # port 0: a running plexus may hold it
        try:
            found = await asyncio.wait_for(discover(port, profile.stun), NETWORK_TIMEOUT + profile.stun.timeout)
        finally:
            port.close()
    except PlexusError as error:
        return [Check("STUN", "fail", error.message, error.hint)]
    except TimeoutError:
        return [Check("STUN", "fail", "no STUN answer in time", "check stun.servers and UDP reachability")]
    outer = f"{found.outer[0]}:{found.outer[1]}"
    checks = [Check("STUN", "ok", f"{found.server} answered: public endpoint {outer}")]
    suitable, why = punchable(found.mapping)
    checks.append(Check("NAT", "ok" if suitable else "fail", f"{found.mapping}: {why.split(';')[0]}",
                        None if suitable else "see `plexus nat` for what would still work"))
    return checks


def check_payload(profile: Profile) -> list[Check]:
    finder: Callable[..., object] | None = None
    for module_name in ("plexus.launch.template", "plexus.launch.manifest"):
        try:
            module = __import__(module_name, fromlist=["find_template"])
            finder = getattr(module, "find_template", None)
        except ImportError:
            continue
        if finder is not None:
            break
    if finder is None:
        return [Check("payload", "n/a", "template support not available in this build")]
    try:
        template = finder(profile.payload.template, profile.path.parent if profile.path else None)
    except PlexusError as error:
        return [Check("payload template", "fail", error.message, error.hint or "fix payload.template")]
    argv = getattr(template, "argv", [])
    program = argv[0] if argv else ""
    if not program or "{" in program:
        return [Check("payload program", "warn", f"template {profile.payload.template!r}: program is computed "
                      "at launch", None)]
    found = shutil.which(program)
    if found is None:
        return [Check("payload program", "fail", f"{program} is not installed (template "
                      f"{profile.payload.template!r})", f"install {program}")]
    return [Check("payload program", "ok", f"{found} (template {profile.payload.template!r})")]
