"""Replay and staleness checks for received offers (carrier-independent), remembered across restarts.

An authenticated offer is dropped when
- its time differs from ours by more than ``skew``, or it was older than ``max_age`` when the wait started;
- its nonce was seen before, by this process or (through the replay file) by an earlier one;
- it is an invite not newer, by the time in the signed offer, than the last invite taken from the same peer:
  a captured invite delivered again, or one withheld and delivered late, never replaces the session that a
  newer invite started, even after a restart of the acceptor.

The replay file is small JSON in the state folder (``plexus.state``; 0600 in a 0700 folder): the hashed nonces of
offers still inside the skew window (older ones are refused as stale anyway) and each peer's last invite time.
Writes merge with the file under a lock, so two processes of one host do not undo each other's entries.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from plexus.rendezvous.offer import Offer
from plexus.state import private_dir

log = logging.getLogger("plexus.rendezvous")

FORMAT = 1
MAX_NONCES = 4096  # entries kept in the file (authenticated offers inside the skew window: a handful)
MAX_PEERS = 4096


def replay_file(state: Path, host_id: str) -> Path:
    return state / f"replay-{host_id}.json"


class Freshness:
    def __init__(self, max_age: float, skew: float, *, clock: Callable[[], float] = time.time,
                 capacity: int = 65536, store: Path | None = None) -> None:
        self.max_age = max_age
        self.skew = skew
        self._clock = clock
        self.started = clock()
        self._capacity = capacity
        self._seen: dict[str, float] = {}  # hashed nonce -> offer time
        self._last_invite: dict[str, float] = {}  # peer id -> time of its newest invite taken
        self.store = store
        if store is not None:
            self._load()

    def check(self, offer: Offer) -> str | None:
        """Why the offer must be dropped, or None (and it is remembered, on disk too)."""
        now = self._clock()
        key = _nonce_key(offer.nonce)
        if key in self._seen:
            return "replayed (nonce seen before)"
        if offer.time > now + self.skew:
            return f"dated {offer.time - now:.0f} s in the future (allowed clock skew {self.skew:g} s)"
        if offer.time < now - self.skew:
            return f"stale: {now - offer.time:.0f} s old (allowed clock skew {self.skew:g} s)"
        if offer.time < self.started - self.max_age:
            return f"stale: older than {self.max_age:g} s when the wait started"
        last = self._last_invite.get(offer.sender)
        if offer.kind == "invite" and last is not None and offer.time <= last:
            return (f"not newer than the last invite taken from {offer.sender!r} ({last - offer.time:.1f} s "
                    "older): replayed, or delivered late")
        self._seen[key] = offer.time
        if offer.kind == "invite":
            self._last_invite[offer.sender] = offer.time
        self._prune(now)
        if self.store is not None:
            self._save(key, offer)
        return None

    def _prune(self, now: float) -> None:
        horizon = now - self.skew - 1  # an offer older than this is refused as stale: its nonce may go
        for key in [k for k, t in self._seen.items() if t < horizon]:
            del self._seen[key]
        while len(self._seen) > self._capacity:
            del self._seen[min(self._seen, key=self._seen.__getitem__)]

    # -- the replay file -----------------------------------------------------------------------------------------

    def _load(self) -> None:
        assert self.store is not None
        try:
            nonces, invites = _read(self.store)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.warning("rendezvous: replay memory %s unusable (%s); offers seen before this start are only "
                        "refused by age", self.store, error)
            return
        self._seen.update(nonces)
        self._last_invite.update(invites)
        self._prune(self._clock())

    def _save(self, key: str, offer: Offer) -> None:
        assert self.store is not None
        try:
            with _locked(self.store):
                try:
                    nonces, invites = _read(self.store)
                except (FileNotFoundError, ValueError):
                    nonces, invites = {}, {}
                nonces[key] = offer.time
                if offer.kind == "invite":
                    invites[offer.sender] = max(offer.time, invites.get(offer.sender, 0.0))
                horizon = self._clock() - self.skew - 1
                kept = sorted(((t, k) for k, t in nonces.items() if t >= horizon), reverse=True)[:MAX_NONCES]
                newest = sorted(invites.items(), key=lambda item: -item[1])[:MAX_PEERS]
                _write(self.store, {"plexus-replay": FORMAT, "nonces": {k: t for t, k in kept},
                                    "invites": dict(newest)})
        except OSError as error:
            log.warning("rendezvous: cannot write the replay memory %s (%s): a restart forgets this offer; "
                        "set PLEXUS_STATE_DIR to a writable folder", self.store, error.strerror or error)
            self.store = None  # one warning, not one per offer


def _nonce_key(nonce: bytes) -> str:
    return hashlib.sha256(nonce).hexdigest()[:32]


def _read(path: Path) -> tuple[dict[str, float], dict[str, float]]:
    with path.open("rb") as stream:
        data = json.loads(stream.read(1 << 20))
    if not isinstance(data, dict) or data.get("plexus-replay") != FORMAT:
        raise ValueError("not a plexus replay file")

    def times(name: str) -> dict[str, float]:
        entries = data.get(name)
        if not isinstance(entries, dict):
            raise ValueError(f"no {name}")
        return {str(k): float(v) for k, v in entries.items() if isinstance(v, int | float)}

    return times("nonces"), times("invites")


def _write(path: Path, document: dict[str, object]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as stream:
        json.dump(document, stream, separators=(",", ":"))
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    private_dir(path.parent)
    descriptor = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)
