"""TURN credentials: long-term (RFC 8489 §9.2: a username and a password), or the TURN REST shared-secret scheme
(draft-uberti-behave-turn-rest, coturn's ``use-auth-secret``): the username is ``<expiry unix time>:<name>`` and
the password ``base64(HMAC-SHA1(secret, username))``, so a server that knows the secret accepts it until the
expiry, and no long-lived password is handed out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from plexus.profile.model import TurnServer

REST_TTL = 24 * 3600  # seconds a derived username stays valid: longer than any allocation's refreshes need


def rest_credentials(secret: str, name: str, now: float | None = None, ttl: int = REST_TTL) -> tuple[str, str]:
    """The username and password of the REST scheme for ``name``, valid ``ttl`` seconds from ``now``."""
    expiry = int(now if now is not None else time.time()) + ttl
    username = f"{expiry}:{name}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def credentials_for(server: TurnServer, name: str) -> tuple[str, str]:
    """The username and password to log in to ``server`` with (secrets resolved here, never logged)."""
    if server.secret is not None:
        return rest_credentials(server.secret.resolve(), name)
    if server.username is None or server.password is None:
        raise ValueError(f"TURN server {server.url} has neither a username and password nor a secret")
    return server.username, server.password.resolve()
