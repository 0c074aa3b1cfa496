"""``plexus.rendezvous.probe`` over the DHT: run one side of a rendezvous and print JSON lines (for tests,
benchmarks and debugging):

    python3 -m plexus.rendezvous.dht.probe PROFILE --accept [--count N]
    python3 -m plexus.rendezvous.dht.probe PROFILE --invite PEER [--count N] [--gap MIN MAX]

Events as in ``plexus.rendezvous.probe`` (ready, sent, received, agreement, refused, error); ``ready`` comes
once our DHT node runs and listens, with ``bootstrap``: whether a bootstrap node answers a ping (2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from plexus.errors import PlexusError
from plexus.rendezvous.base import LocalOffer
from plexus.rendezvous.dht import DhtCarrier, open_dht_exchange
from plexus.rendezvous.probe import accept, emit, initiate, trace


async def main_async(args: argparse.Namespace) -> int:
    from plexus.profile import load

    profile = load(args.profile)
    host, _, port = args.endpoint.rpartition(":")
    local = LocalOffer((host, int(port)), args.nat, dict(item.split("=", 1) for item in args.export))
    async with open_dht_exchange(profile, trace=trace) as exchange:
        carrier = exchange.carrier
        assert isinstance(carrier, DhtCarrier)
        reached = await carrier.node.any_reached(2.0)
        emit("ready", host=profile.host.id, port=carrier.node.bound_port, bootstrap=reached)
        if args.invite:
            return await initiate(exchange, local, args.invite, args.count, tuple(args.gap))
        return await accept(exchange, local, args.count, args.refuse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m plexus.rendezvous.dht.probe",
                                     description="one side of a DHT rendezvous, as JSON lines")
    parser.add_argument("profile")
    role = parser.add_mutually_exclusive_group(required=True)
    role.add_argument("--invite", metavar="PEER")
    role.add_argument("--accept", action="store_true")
    parser.add_argument("--count", type=int, default=1, help="agreements to make (accept: 0 = forever)")
    parser.add_argument("--gap", type=float, nargs=2, default=(0.0, 0.0), metavar=("MIN", "MAX"))
    parser.add_argument("--endpoint", default="198.18.0.1:40000", help="our endpoint to announce")
    parser.add_argument("--nat", default="endpoint-independent")
    parser.add_argument("--export", action="append", default=[], metavar="K=V")
    parser.add_argument("--refuse", metavar="REASON", help="accept: refuse every invite")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(main_async(args))
    except PlexusError as error:
        emit("error", message=str(error))
        return 4
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
