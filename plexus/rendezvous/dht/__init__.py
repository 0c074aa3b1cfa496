"""The DHT carrier (OpenDHT): ``carrier`` puts offers on the peer's key and listens on ours; ``node`` is the
asyncio face of one OpenDHT node, which runs in a child process (``worker``); ``identity`` holds our key and
certificate and derives the keys we listen and put on; ``probe`` runs one side of an exchange for tests."""

from __future__ import annotations

from plexus.rendezvous.dht.carrier import DhtCarrier, open_dht_exchange, value_id, value_time

__all__ = ["DhtCarrier", "open_dht_exchange", "value_id", "value_time"]
