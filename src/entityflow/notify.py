"""The systemd side of the service: sd_notify messages and inherited listening sockets.

Both protocols are a few lines over plain sockets (sd_notify(3), sd_listen_fds(3)), so no
library is needed. Outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS) everything here is inert.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

# The first inherited descriptor (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3
# Variables meant for this process alone: worker processes must neither notify nor listen.
SYSTEMD_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


class Notifier:
    """Sends sd_notify messages to the socket systemd named; does nothing without one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        # Ping at half the period, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = watchdog_usec / 2_000_000 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], pid: int | None = None) -> Notifier:
        """A notifier for NOTIFY_SOCKET, watching if WATCHDOG_USEC is meant for `pid`."""
        pid = os.getpid() if pid is None else pid
        usec = environ.get("WATCHDOG_USEC", "")
        watchdog_pid = environ.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and int(usec) > 0 and watchdog_pid in ("", str(pid))
        return cls(environ.get("NOTIFY_SOCKET") or None, int(usec) if watched else None)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str | int) -> bool:
        """Send one message of KEY=value lines (`READY=1` is `send(READY=1)`)."""
        if not self.address:
            return False
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # A full receive queue drops a message rather than stalling the event loop.
            self._socket.setblocking(False)
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        # A leading "@" names a socket in the abstract namespace.
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto(message.encode(), target)
        except OSError as error:
            # systemd going away must not take the service with it; say so once.
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address, error)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING=1, STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def extend_timeout(self, seconds: float, status: str) -> bool:
        """Ask for `seconds` more before systemd's start/stop timeout kills us."""
        return self.send(EXTEND_TIMEOUT_USEC=int(seconds * 1_000_000), STATUS=status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def listen_sockets(environ: Mapping[str, str], pid: int | None = None) -> list[socket.socket]:
    """The listening sockets systemd passed to `pid` (socket activation), or none."""
    pid = os.getpid() if pid is None else pid
    if environ.get("LISTEN_PID") != str(pid):
        return []
    count = environ.get("LISTEN_FDS", "")
    if not count.isdigit():
        return []
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        # Ours alone: the worker processes must not hold the listening socket open.
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    return sockets


def forget_systemd(environ: MutableMapping[str, str]) -> None:
    """Remove the variables that address this process only, before children start."""
    for name in SYSTEMD_VARIABLES:
        environ.pop(name, None)
