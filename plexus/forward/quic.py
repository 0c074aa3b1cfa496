"""aioquic's QuicConnection (sans-I/O) with the two things plexus needs and aioquic 1.7 has no public hook for:
certificate pinning on both sides, and receive windows that follow what the application has consumed.

**Pinning.** aioquic builds its TLS context inside ``QuicConnection._initialize``; we re-class that context to
``_PinnedContext``, which
- checks the peer's leaf certificate against the expected fingerprint the moment it is parsed
  (``_set_peer_certificate``), and fails the handshake with a ``bad_certificate`` alert if it differs (the
  CertificateVerify signature that follows proves the peer holds the key);
- as a server, asks for a client certificate (``_request_client_certificate``, which aioquic keeps for its own
  tests) and refuses to finish the handshake without one (``certificate_required``; aioquic would accept an empty
  Certificate message).
CA verification is off (``verify_mode=CERT_NONE``): the pin replaces it. No session tickets are issued or used,
so every handshake shows certificates (a PSK resumption would skip them). The link checks ``verified`` again
when the handshake completes, before it takes any stream data, and opens streams only once ``confirmed`` too.

**Receive windows.** aioquic doubles a stream's MAX_STREAM_DATA whenever half of it is received, whether or not
the application has read it, so a slow TCP reader would let a fast peer fill our memory. Here a stream's window
is ``consumed + window``: the application calls ``consume(stream_id, n)`` once ``n`` bytes went into the TCP socket
and it drained. The send side's back-pressure reads ``send_buffered(stream_id)``: bytes written but not yet acked.

These are aioquic internals (checked against 1.7.2); ``configuration()`` fails with one clear line if a name is
gone, and every check fails closed (a missing peer certificate is never ``verified``).
"""

from __future__ import annotations

import hmac
import ssl
from functools import cache
from typing import Any, cast

import aioquic
from aioquic import tls
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

from plexus.errors import LaunchError
from plexus.forward.certs import Identity, fingerprint
from plexus.forward.wire import ALPN

WINDOW = 2 * 1024 * 1024  # per-stream receive window (bytes in flight toward us, not yet consumed)
CONNECTION_WINDOW = 16 * 1024 * 1024  # initial connection-wide window; aioquic raises it as it is used
DATAGRAM_SIZE = 1200  # QUIC's minimum: fits any path a punch found, no PMTU discovery needed


class AlertCertificateRequired(tls.Alert):
    description = tls.AlertDescription.certificate_required


class _PinnedContext(tls.Context):
    pin: str  # the expected fingerprint
    shown: str | None  # the fingerprint the peer showed, if it was not the pinned one

    def _set_peer_certificate(self, certificate: tls.Certificate) -> None:
        super()._set_peer_certificate(certificate)
        assert self._peer_certificate is not None
        seen = fingerprint(self._peer_certificate)
        if not hmac.compare_digest(seen, self.pin):
            self.shown = seen
            raise tls.AlertBadCertificate("peer certificate fingerprint mismatch")

    def _server_expect_finished(self) -> None:
        if self._peer_certificate is None:
            raise AlertCertificateRequired("a client certificate is required")
        super()._server_expect_finished()


# The private aioquic names this module builds on (checked with aioquic 1.7): if one goes, fail with a clear line.
_HOOKS = [(tls.Context, "_set_peer_certificate"), (tls.Context, "_server_expect_finished"),
          (QuicConnection, "_initialize"), (QuicConnection, "_write_stream_limits"),
          (QuicConnection, "_on_max_stream_data_delivery")]


@cache
def _missing_hooks() -> list[str]:
    missing = [f"{owner.__name__}.{name}" for owner, name in _HOOKS if not hasattr(owner, name)]
    if not hasattr(tls.Context(is_client=False), "_request_client_certificate"):
        missing.append("Context._request_client_certificate")
    return missing


def configuration(*, client: bool, identity: Identity, idle_timeout: float) -> QuicConfiguration:
    if missing := _missing_hooks():
        raise LaunchError(f"forward: aioquic {aioquic.__version__} lacks {', '.join(missing)}",
                          hint="plexus.forward is tested with aioquic 1.7")
    return QuicConfiguration(
        is_client=client, alpn_protocols=[ALPN], idle_timeout=idle_timeout, verify_mode=ssl.CERT_NONE,
        certificate=identity.certificate, private_key=identity.private_key, max_stream_data=WINDOW,
        max_data=CONNECTION_WINDOW, max_datagram_size=DATAGRAM_SIZE,
    )


class PinnedConnection(QuicConnection):
    """A QuicConnection that only completes a handshake with the peer whose certificate has fingerprint ``pin``."""

    def __init__(self, *, configuration: QuicConfiguration, pin: str, window: int = WINDOW, **kwargs: Any) -> None:
        super().__init__(configuration=configuration, **kwargs)
        self.pin, self.window = pin, window
        self._consumed: dict[int, int] = {}
        self.closed_here = False  # we closed it (an API call, or aioquic on a protocol or TLS error)

    def close(self, error_code: int = 0, frame_type: int | None = None, reason_phrase: str = "") -> None:
        self.closed_here = self.closed_here or self._close_event is None
        super().close(error_code=error_code, frame_type=frame_type, reason_phrase=reason_phrase)

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        self.tls.__class__ = _PinnedContext  # aioquic has no factory for its TLS context
        pinned = cast(_PinnedContext, self.tls)
        pinned.pin, pinned.shown = self.pin, None
        if not self._is_client:
            pinned._request_client_certificate = True

    @property
    def verified(self) -> bool:
        """The handshake showed the pinned certificate (check after HandshakeCompleted)."""
        context = getattr(self, "tls", None)  # set by _initialize
        peer = context._peer_certificate if context is not None else None
        return peer is not None and hmac.compare_digest(fingerprint(peer), self.pin)

    @property
    def confirmed(self) -> bool:
        """The peer finished its side of the handshake: for a client, HANDSHAKE_DONE came, so the server has
        accepted our certificate (TLS 1.3 completes a client's handshake before the server checks it)."""
        return self._handshake_confirmed

    @property
    def shown(self) -> str | None:
        """The fingerprint the peer showed instead of the pinned one (a mismatch), else None."""
        return cast(_PinnedContext, self.tls).shown if hasattr(self, "tls") else None

    def send_buffered(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return len(stream.sender._buffer) if stream is not None else 0

    def consume(self, stream_id: int, size: int) -> None:
        self._consumed[stream_id] = self._consumed.get(stream_id, 0) + size

    def forget(self, stream_id: int) -> None:
        self._consumed.pop(stream_id, None)

    def _write_stream_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream) -> None:
        # Replaces aioquic's doubling: raise the limit by consumption, in steps of a quarter window (fewer frames).
        stream_id = stream.stream_id
        assert stream_id is not None  # only application streams come here, not crypto streams
        if stream.max_stream_data_local:
            limit = self._consumed.get(stream_id, 0) + self.window
            if limit - stream.max_stream_data_local >= self.window // 4:
                stream.max_stream_data_local = limit
        if stream.max_stream_data_local_sent != stream.max_stream_data_local:
            buf = builder.start_frame(QuicFrameType.MAX_STREAM_DATA, capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                                      handler=self._on_max_stream_data_delivery, handler_args=(stream,))
            buf.push_uint_var(stream_id)
            buf.push_uint_var(stream.max_stream_data_local)
            stream.max_stream_data_local_sent = stream.max_stream_data_local
