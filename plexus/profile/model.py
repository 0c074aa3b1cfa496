"""The typed profile every stage consumes. The loader (``plexus.profile.load``) builds it from YAML after
validation; tests and other programs may build it directly.

Durations are seconds (float). Paths are absolute (the loader resolves them against the profile's directory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from plexus.errors import ProfileError

Role = Literal["accept", "initiate"]
RestartPolicy = Literal["never", "on-failure", "always"]
AuthMethod = Literal["smime", "psk", "none"]
TlsMode = Literal["implicit", "starttls"]
RelayPolicy = Literal["fallback", "always", "never"]
TurnTransport = Literal["udp", "tcp", "tls"]


@dataclass(frozen=True)
class Endpoint:
    """``host:port`` (host may be a name, an IPv4 address or a bracketed IPv6 address)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, default_port: int | None = None) -> Endpoint:
        text = text.strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host, port_text = text, ""
        if not port_text:
            if default_port is None:
                raise ValueError(f"{text!r} has no port (write host:port)")
            return cls(host, default_port)
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise ValueError(f"{text!r}: port must be a number 0..65535")
        if not host:
            raise ValueError(f"{text!r} has no host")
        return cls(host, int(port_text))


@dataclass(frozen=True)
class SecretRef:
    """A secret given by reference: ``{env: NAME}``, ``{file: path}``, ``{command: [argv...]}``, or inline.

    ``resolve()`` fetches it when needed; ``repr``/``str`` never show the value. A command runs once per process,
    capped in time and output (``plexus.profile.secrets``); ``await secrets.fetch(ref)`` runs it without blocking.
    """

    kind: Literal["env", "file", "command", "inline"]
    source: str | tuple[str, ...]

    def __repr__(self) -> str:
        if self.kind == "inline":
            return "SecretRef(inline, ***)"
        return f"SecretRef({self.kind}={self.source!r})"

    __str__ = __repr__

    def describe(self) -> str:
        if self.kind == "env":
            return f"environment variable {self.source}"
        if self.kind == "file":
            return f"file {self.source}"
        if self.kind == "command":
            return f"command {' '.join(self.source)}"
        return "inline value"

    def resolve(self) -> str:
        """The secret's value; a ProfileError naming the reference when it cannot be had."""
        if self.kind == "inline":
            assert isinstance(self.source, str)
            return self.source
        if self.kind == "env":
            assert isinstance(self.source, str)
            value = os.environ.get(self.source)
            if value is None:
                raise ProfileError(f"secret: environment variable {self.source} is not set",
                                   hint=f"export {self.source}=...")
            return value
        if self.kind == "file":
            assert isinstance(self.source, str)
            try:
                return Path(self.source).read_text().rstrip("\r\n")
            except OSError as error:
                raise ProfileError(f"secret: cannot read {self.source}: {error.strerror}") from error
        from plexus.profile import secrets  # only here: keeps `import plexus.profile` light for the CLI's startup

        return secrets.cached_or_run(self)


@dataclass(frozen=True)
class Host:
    id: str
    address: str | None = None  # our mailbox address (email rendezvous)


@dataclass(frozen=True)
class Peer:
    id: str
    address: str | None = None  # the peer's mailbox address
    certificate: Path | None = None  # S/MIME: verify the peer's signature with it and encrypt to it
    vars: dict[str, Any] = field(default_factory=dict)  # payload vars for this peer, over payload.vars
    psk: SecretRef | None = None  # psk: this peer's own pre-shared key (else rendezvous.psk)


@dataclass(frozen=True)
class MailServer:
    host: str
    port: int
    tls: TlsMode = "implicit"


@dataclass(frozen=True)
class ImapServer(MailServer):
    idle: bool = True  # use IMAP IDLE when the server offers it
    poll: float = 5.0  # polling interval when IDLE is off or not offered


@dataclass(frozen=True)
class EmailRendezvous:
    smtp: MailServer
    imap: ImapServer
    login: str
    password: SecretRef
    ca: Path | None = None  # extra CA file that signs the mail servers' certificates
    folder: str = "INBOX"


@dataclass(frozen=True)
class DhtRendezvous:
    bootstrap: tuple[Endpoint, ...]
    port: int = 0
    network: int = 0
    keys: Path | None = None  # directory with our DHT identity (plexus keygen)
    app: str = "plexus"


@dataclass(frozen=True)
class Authentication:
    method: AuthMethod
    certificate: Path | None = None  # smime: our certificate
    key: Path | None = None  # smime: our private key
    ca: Path | None = None  # smime: trust peer certificates signed by this CA (else pinned per peer)
    psk: SecretRef | None = None  # psk: the pre-shared key


@dataclass(frozen=True)
class Rendezvous:
    authentication: Authentication
    email: EmailRendezvous | None = None
    dht: DhtRendezvous | None = None
    timeout: float = 60.0  # how long an initiator waits for the answer
    max_age: float = 120.0  # offers older than this are stale
    skew: float = 120.0  # allowed clock difference between the peers


@dataclass(frozen=True)
class Stun:
    servers: tuple[Endpoint, ...]
    bind: Endpoint = Endpoint("0.0.0.0", 0)
    timeout: float = 3.0  # total deadline of one STUN transaction
    rto: float = 0.1  # initial retransmission timeout (doubles per retry)


@dataclass(frozen=True)
class Punch:
    hops: int = 7  # TTL of the opening packets
    timeout: float = 30.0
    interval: float = 0.05  # handshake retransmission timer


@dataclass(frozen=True)
class TurnServer:
    """One TURN server (RFC 8656) and how to log in: long-term credentials, or a TURN REST shared secret."""

    url: str  # as written: turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]
    host: str
    port: int
    transport: TurnTransport = "udp"
    username: str | None = None
    password: SecretRef | None = None
    secret: SecretRef | None = None  # REST scheme: time-limited username "<expiry>:<host id>"
    ca: Path | None = None  # turns: an extra CA for the server's certificate

    @classmethod
    def parse_url(cls, url: str) -> tuple[str, int, TurnTransport]:
        """Host, port and transport of an RFC 7065 TURN URI (ValueError with the reason)."""
        scheme, _, rest = url.partition(":")
        if scheme not in ("turn", "turns"):
            raise ValueError(f"{url!r} is not a TURN URI (turn:HOST[:PORT] or turns:HOST[:PORT])")
        rest, _, query = rest.partition("?")
        transport: TurnTransport = "tls" if scheme == "turns" else "udp"
        if query:
            if query not in ("transport=udp", "transport=tcp"):
                raise ValueError(f"{url!r}: the query may only be transport=udp or transport=tcp")
            if scheme == "turns" and query == "transport=udp":
                raise ValueError(f"{url!r}: turns (TLS) runs over TCP (DTLS is not supported)")
            if scheme == "turn":
                transport = "tcp" if query == "transport=tcp" else "udp"
        endpoint = Endpoint.parse(rest, default_port=5349 if scheme == "turns" else 3478)
        if endpoint.port == 0:
            raise ValueError(f"{url!r}: port 0 is not a server port")
        return endpoint.host, endpoint.port, transport


@dataclass(frozen=True)
class Relay:
    servers: tuple[TurnServer, ...] = ()
    policy: RelayPolicy = "fallback"
    lifetime: float = 600.0  # requested allocation lifetime (refreshed while in use)

    @property
    def usable(self) -> bool:
        return bool(self.servers) and self.policy != "never"


@dataclass(frozen=True)
class Payload:
    template: str  # built-in name, user template name, or a path to a template directory
    vars: dict[str, Any] = field(default_factory=dict)
    restart: RestartPolicy = "never"
    max_restarts: int = 10
    restart_delay: float = 1.0


@dataclass(frozen=True)
class Profile:
    name: str
    host: Host
    role: Role
    peers: tuple[Peer, ...]
    rendezvous: Rendezvous
    stun: Stun
    payload: Payload
    punch: Punch = Punch()
    relay: Relay = Relay()
    version: int = 1
    path: Path | None = None  # the YAML file it came from
    warnings: tuple[str, ...] = ()  # e.g. inline secrets, authentication: none

    def peer(self, peer_id: str) -> Peer | None:
        return next((p for p in self.peers if p.id == peer_id), None)

    def psk_for(self, peer: Peer) -> SecretRef | None:
        """The pre-shared key that authenticates offers to and from ``peer``: its own, else the profile's."""
        return peer.psk or self.rendezvous.authentication.psk

    def payload_vars(self, peer: Peer) -> dict[str, Any]:
        return {**self.payload.vars, **peer.vars}
