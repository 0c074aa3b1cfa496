"""The built-in ``forward`` payload: TCP ports forwarded over QUIC on the punched UDP port, like ``ssh -L``,
``-R`` and ``-D``, without root.

After the punch, plexus closes its socket and a ``ForwardSession`` binds the same port: the initiator is the
QUIC client, the acceptor the QUIC server (which takes one connection, from the peer's address only). Every
forwarded TCP connection is one bidirectional QUIC stream; half-close, resets and back-pressure cross it, and a
dead connection (idle timeout, the peer gone) resets every TCP connection of the session.

- ``-L [bind_host:]port:host:hostport``: we listen (127.0.0.1 unless told); the peer connects to host:hostport.
- ``-R [bind_host:]port:host:hostport``: the peer listens on its side and we connect to host:hostport.
- ``-D [bind_host:]port``: a SOCKS5 listener (no auth, CONNECT); the peer connects where each client asks.

Security model:

- **Pinning.** Each side makes a fresh self-signed certificate per session (``Identity.generate()``) and puts
  ``fingerprint(cert)`` in its authenticated plexus offer. The QUIC handshake (TLS 1.3, QUIC's own keys) fails
  unless the peer shows exactly the certificate with the expected fingerprint and proves it holds the key; the
  server requires a client certificate. No stream is opened or accepted before that (``plexus.forward.quic``).
- **Expose.** A side connects only to the ``host:port`` targets in its ``expose`` list, plus the targets of its
  own ``-R`` requests (asking for them exposes them). Everything else is refused with a stream reset and
  reported on the refusing side: the peer never gets an open proxy. Hosts match by name, case-insensitively, and
  are not resolved first: ``localhost:22`` does not expose ``127.0.0.1:22``.
- **Loopback-only -R.** We open listeners for the peer's ``-R`` requests on loopback addresses (127.0.0.0/8,
  ::1, ``localhost``) only, so the peer cannot open ports on our network; other requests are answered ``failed``.
- Datagrams from any address but the peer's are dropped and counted (no QUIC path migration).

Use::

    listeners = Listeners()                     # outlives sessions: a restart keeps the local ports
    session = ForwardSession(bind=("0.0.0.0", 40000), peer=("203.0.113.7", 41000), client=True,
                             identity=identity, peer_fingerprint=peer_fp, local=[LocalForward.parse("8080:db:5432")],
                             expose=[Target.parse("localhost:22")], report=report, listeners=listeners)
    await session.start()
    await session.wait()                        # LaunchError with the reason when the connection ends

Reports (``report(kind, data)``): ``listening``, ``connected``, ``serving`` / ``serve-failed`` (a peer's -R),
``remote-listening`` / ``remote-failed`` (ours), ``open`` / ``close`` (a connection, with bytes), ``refused``,
``unreachable``, ``socks-failed``, ``fingerprint-mismatch``, ``closed`` (why).
"""

from plexus.forward.certs import Identity, check_fingerprint, fingerprint
from plexus.forward.listeners import Listeners
from plexus.forward.pump import ForwardStats
from plexus.forward.session import ForwardSession, Report, run_forward
from plexus.forward.spec import LocalForward, RemoteForward, Socks, Target
from plexus.forward.wire import ALPN

__all__ = ["ALPN", "ForwardSession", "ForwardStats", "Identity", "Listeners", "LocalForward", "RemoteForward",
           "Report", "Socks", "Target", "check_fingerprint", "fingerprint", "run_forward"]
