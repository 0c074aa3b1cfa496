"""Certificate pinning at the QUIC level, sans-I/O: two connections handing datagrams to each other in memory."""

from __future__ import annotations

import ssl

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted
from aioquic.quic.packet import QuicErrorCode, pull_quic_header
from aioquic.tls import AlertDescription

from plexus.forward import ALPN, Identity
from plexus.forward.quic import PinnedConnection, configuration

CLIENT, SERVER = ("127.0.0.1", 1000), ("127.0.0.1", 2000)
BAD_CERTIFICATE = QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate
CERTIFICATE_REQUIRED = QuicErrorCode.CRYPTO_ERROR + AlertDescription.certificate_required


def run(client: QuicConnection, server_identity: Identity, server_pin: str) -> tuple[PinnedConnection, list, list]:
    """Drive a handshake to its end; the server, its events and the client's events."""
    now = 0.0
    client.connect(SERVER, now=now)
    server: PinnedConnection | None = None
    client_events: list[object] = []
    server_events: list[object] = []
    for _ in range(100):  # 4 s: past the closing period (3 PTO) of a failed handshake
        now += 0.04
        for data, _ in client.datagrams_to_send(now):
            if server is None:
                header = pull_quic_header(Buffer(data=data), host_cid_length=8)
                server = PinnedConnection(configuration=configuration(client=False, identity=server_identity,
                                                                      idle_timeout=5),
                                          pin=server_pin, original_destination_connection_id=header.destination_cid)
            server.receive_datagram(data, CLIENT, now)
        if server is not None:
            for data, _ in server.datagrams_to_send(now):
                client.receive_datagram(data, SERVER, now)
            while (event := server.next_event()) is not None:
                server_events.append(event)
        while (event := client.next_event()) is not None:
            client_events.append(event)
        for connection in (client, server):
            timer = connection.get_timer() if connection is not None else None
            if connection is not None and timer is not None and timer <= now:
                connection.handle_timer(now)
    assert server is not None
    return server, client_events, server_events


def closed_with(events: list[object]) -> int | None:
    return next((e.error_code for e in events if isinstance(e, ConnectionTerminated)), None)


def test_matching_pins_verify_both_ways() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    client = PinnedConnection(configuration=configuration(client=True, identity=alice, idle_timeout=5),
                              pin=bob.fingerprint)
    server, client_events, server_events = run(client, bob, alice.fingerprint)
    assert any(isinstance(e, HandshakeCompleted) for e in client_events + server_events)
    assert client.verified and client.confirmed and server.verified
    assert client.shown is None and server.shown is None


def test_a_client_without_a_certificate_is_refused() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    plain = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
    client = QuicConnection(configuration=plain)
    server, client_events, server_events = run(client, bob, alice.fingerprint)
    assert not any(isinstance(e, HandshakeCompleted) for e in server_events)
    assert not server.verified
    assert closed_with(server_events) == CERTIFICATE_REQUIRED
    assert closed_with(client_events) == CERTIFICATE_REQUIRED


def test_an_unpinned_client_certificate_is_refused() -> None:
    alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    client = PinnedConnection(configuration=configuration(client=True, identity=mallory, idle_timeout=5),
                              pin=bob.fingerprint)
    server, client_events, server_events = run(client, bob, alice.fingerprint)
    assert server.shown == mallory.fingerprint
    assert not any(isinstance(e, HandshakeCompleted) for e in server_events)
    assert closed_with(server_events) == closed_with(client_events) == BAD_CERTIFICATE
    assert client.verified and not client.confirmed  # it saw bob, but bob never confirmed: no streams opened


def test_an_unpinned_server_certificate_is_refused_before_the_client_finishes() -> None:
    alice, bob, mallory = Identity.generate(), Identity.generate(), Identity.generate()
    client = PinnedConnection(configuration=configuration(client=True, identity=alice, idle_timeout=5),
                              pin=bob.fingerprint)
    server, client_events, server_events = run(client, mallory, alice.fingerprint)
    assert not server.verified
    assert client.shown == mallory.fingerprint and not client.verified
    assert not any(isinstance(e, HandshakeCompleted) for e in client_events + server_events)
    assert closed_with(client_events) == closed_with(server_events) == BAD_CERTIFICATE
