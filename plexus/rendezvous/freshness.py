"""Replay and staleness checks for received offers (carrier-independent).

An offer is dropped when its nonce was seen before (in this process), when its time differs from ours by more
than ``skew``, or when it was older than ``max_age`` at the moment the wait started. Nothing is persisted: a
replay after a restart must still fall within the skew window, and even then it can only make us answer an
invite whose X25519 private key the replayer does not have, so it cannot learn the session secret.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from plexus.rendezvous.offer import Offer


class Freshness:
    def __init__(self, max_age: float, skew: float, *, clock: Callable[[], float] = time.time,
                 capacity: int = 65536) -> None:
        self.max_age = max_age
        self.skew = skew
        self._clock = clock
        self.started = clock()
        self._capacity = capacity
        self._seen: OrderedDict[bytes, float] = OrderedDict()  # nonce -> offer time, oldest first

    def check(self, offer: Offer) -> str | None:
        """Why the offer must be dropped, or None (and its nonce is remembered)."""
        now = self._clock()
        if offer.nonce in self._seen:
            return "replayed (nonce seen before)"
        if offer.time > now + self.skew:
            return f"dated {offer.time - now:.0f} s in the future (allowed clock skew {self.skew:g} s)"
        if offer.time < now - self.skew:
            return f"stale: {now - offer.time:.0f} s old (allowed clock skew {self.skew:g} s)"
        if offer.time < self.started - self.max_age:
            return f"stale: older than {self.max_age:g} s when the wait started"
        self._remember(offer.nonce, now)
        return None

    def _remember(self, nonce: bytes, now: float) -> None:
        self._seen[nonce] = now
        # entries older than the skew window can go: such offers are refused as stale anyway
        while self._seen and (len(self._seen) > self._capacity
                              or next(iter(self._seen.values())) < now - 2 * self.skew - 1):
            self._seen.popitem(last=False)
