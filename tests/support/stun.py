"""The loopback STUN server the tests start (coturn, RFC 5780): its primary and alternate addresses."""

PRIMARY = ("127.0.0.1", 13578)
OTHER = ("127.0.0.2", 13579)
