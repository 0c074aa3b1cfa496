"""Doctor: the DHT rendezvous — our identity and the peers' certificates load, our node starts, and each bootstrap
node answers."""

from __future__ import annotations

import asyncio

from plexus.doctor.check import Check
from plexus.errors import PlexusError
from plexus.profile.model import Profile
from plexus.rendezvous.dht.carrier import DhtCarrier, dht_settings
from plexus.rendezvous.dht.identity import identity_files
from plexus.rendezvous.dht.node import DhtNode


async def check_dht(profile: Profile, timeout: float = 3.0) -> list[Check]:
    """doctor: our identity and the peers' certificates load, the node starts, each bootstrap node answers."""
    settings = dht_settings(profile)
    checks: list[Check] = []
    try:
        DhtCarrier(profile)
        checks.append(Check("DHT identity", "ok", f"{identity_files(profile).certificate}, "
                            f"{len(profile.peers)} peer certificate(s)"))
    except PlexusError as error:
        checks.append(Check("DHT identity", "fail", error.message, error.hint))
    node = DhtNode(port=settings.port, network=settings.network, bootstrap=settings.bootstrap)
    try:
        await node.start()
    except PlexusError as error:
        return [*checks, Check("DHT node", "fail", error.message, error.hint)]
    try:
        checks.append(Check("DHT node", "ok", f"listening on UDP port {node.bound_port}, network {settings.network}"))
        results = await asyncio.gather(*(node.reached(endpoint, timeout) for endpoint in settings.bootstrap))
        for endpoint, reached in zip(settings.bootstrap, results, strict=True):
            checks.append(Check(f"DHT bootstrap {endpoint}", "ok", "answered") if reached else
                          Check(f"DHT bootstrap {endpoint}", "fail", f"no answer within {timeout:g} s",
                                "is the node running and UDP open? fix rendezvous.dht.bootstrap"))
    finally:
        await node.close()
    return checks
