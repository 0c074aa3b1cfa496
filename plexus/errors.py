"""The error types plexus shows to people: one line, what is wrong and how to fix it."""

from __future__ import annotations


class PlexusError(Exception):
    """An error with a message fit for a user: one line, naming the thing and the fix.

    The CLI prints ``str(error)`` and exits with ``exit_code``; it never prints a traceback for these.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ProfileError(PlexusError):
    """The profile is invalid or cannot be found."""

    exit_code = 2


class NatError(PlexusError):
    """STUN failed, or the NAT makes hole punching impossible."""

    exit_code = 3


class RendezvousError(PlexusError):
    """The offer exchange failed (mail server, authentication, timeout)."""

    exit_code = 4


class PunchError(PlexusError):
    """The UDP hole punch or the handshake failed."""

    exit_code = 5


class RelayError(PunchError):
    """The TURN relay could not be used: no answer, credentials refused, allocation lost (exit 5, a path
    failure like a punch that failed)."""


class LaunchError(PlexusError):
    """The payload could not be rendered or started."""

    exit_code = 6


class LabError(PlexusError):
    """The network lab could not be built, used or removed."""

    exit_code = 7


def one_line(value: object) -> str:
    """An error (or any value) as one line for a message: whitespace runs, newlines included, become one space;
    an empty text becomes the type's name (``TimeoutError``)."""
    text = " ".join(str(value).split())
    return text or type(value).__name__
