"""Running plexus as a service: the sd_notify protocol (``notify``: READY, STATUS, WATCHDOG, STOPPING, and a
reporter that turns ``plexus up``'s events into them) and the packaged systemd template unit (``unit``)."""

from plexus.service.notify import Notifier, ServiceReporter, notify

__all__ = ["Notifier", "ServiceReporter", "notify"]
