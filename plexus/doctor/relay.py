"""Doctor: the TURN relay — each configured server grants an allocation with our credentials (which is then
released at once), so a wrong password or an unreachable server shows before a session needs the relay."""

from __future__ import annotations

import asyncio

from plexus.doctor.check import Check
from plexus.errors import PlexusError
from plexus.profile.model import Profile


async def check_relay(profile: Profile) -> list[Check]:
    relay = profile.relay
    if not relay.servers:
        return [Check("relay", "n/a", "no TURN server configured: a peer behind a NAT like ours needs its own relay",
                      "add relay.servers (docs/profiles.md, Relays)")]
    if relay.policy == "never":
        return [Check("relay", "n/a", "relay policy never: direct paths only")]
    from plexus.relay import allocate

    async def one(index: int) -> Check:
        server = relay.servers[index]
        name = f"TURN {server.url}"
        try:
            allocation = await allocate([server], profile.host.id, relay.lifetime)
        except PlexusError as error:
            return Check(name, "fail", error.message.removeprefix("no TURN allocation: "), error.hint)
        try:
            return Check(name, "ok", f"allocation granted: relayed address {allocation.relayed[0]}:"
                         f"{allocation.relayed[1]}, our address as it sees it {allocation.mapped[0]}:"
                         f"{allocation.mapped[1]} (released)")
        finally:
            await allocation.release()

    return list(await asyncio.gather(*(one(index) for index in range(len(relay.servers)))))
