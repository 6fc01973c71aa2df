"""One error hierarchy for all of shipper.

Every failure a user can meet is a ``ShipperError``: a message that says what
failed and where, and an optional hint that says what to do about it.
Third-party exceptions (docker, paramiko, requests, yaml) are wrapped at the
adapter that calls into them, so nothing above the adapters sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class ExitStatus(IntEnum):
    """Process exit codes, the same for every command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    CONNECTION = 3  # could not connect or authenticate
    PARTIAL = 4  # some hosts failed, others succeeded
    INTERRUPTED = 130


@dataclass(frozen=True)
class Origin:
    """Where a piece of user input came from: a file and a 1-based line."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path} line {self.line}" if self.line else self.path


class ShipperError(Exception):
    """Base of every error shipper reports to a user."""

    exit_status: ExitStatus = ExitStatus.ERROR
    default_hint: str | None = None  # what to try when the error's own place knows no better

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        # KeyError and friends would otherwise print repr(message).
        return self.message

    def to_json(self) -> dict[str, Any]:
        """The error as ``--json`` shows it, everywhere: its kind, the message and the hint."""
        return {"type": type(self).__name__, "message": self.message, "hint": self.hint}


class UsageError(ShipperError):
    """The command line asks for something that cannot be done as written."""

    exit_status = ExitStatus.USAGE


class InventoryError(ShipperError):
    """The inventory (or a file beside it) is not valid: the user's input, so a usage error (exit 2)."""

    exit_status = ExitStatus.USAGE

    def __init__(self, message: str, hint: str | None = None, origin: Origin | None = None) -> None:
        super().__init__(f"{origin}: {message}" if origin else message, hint)
        self.origin = origin


class HostNotFound(InventoryError, KeyError):
    """A target expression names a host or group the inventory does not have."""

    exit_status = ExitStatus.USAGE


class ConnectionFailed(ShipperError, ConnectionError):
    """shipper could not reach or log in to something it must talk to."""

    exit_status = ExitStatus.CONNECTION


class SSHError(ConnectionFailed):
    """The SSH connection to a host failed."""

    default_hint = 'try the same connection by hand: ssh -v -p PORT USER@ADDRESS (shipper hosts -v HOST shows what shipper dials)'


class SSHAuthenticationFailed(SSHError):
    """The SSH server refused every key (or password) offered."""


class HostKeyUnknown(SSHError):
    """The SSH server's host key is not in any known_hosts file."""


class HostKeyMismatch(SSHError):
    """The SSH server's host key differs from the one on record."""


class EngineUnreachable(ConnectionFailed):
    """The Docker engine of a host did not answer."""


class EngineError(ShipperError):
    """The Docker engine answered, with an error."""

    default_hint = "the engine's own log on that host says more (journalctl -u docker); run again with --traceback for shipper's side"


class PartialFailure(ShipperError):
    """An operation over several hosts failed on some of them."""

    exit_status = ExitStatus.PARTIAL


class RegistryUnreachable(ConnectionFailed):
    """A registry did not answer, or its TLS certificate could not be verified."""


class RegistryNoAnswer(RegistryUnreachable):
    """A registry did not answer at all: no connection, or no answer in time (not a certificate it sent)."""


class RegistryAuthFailed(ConnectionFailed):
    """A registry refused the credentials (or asked for some and there were none)."""


class RegistryError(ShipperError):
    """A registry answered, with an error."""

    default_hint = 'check what answers at that address: curl -v https://HOST:PORT/v2/ should answer 200 or 401 with a Docker-Distribution-Api-Version header'


class RegistryNotFound(RegistryError, LookupError):
    """A registry has no such repository, tag, manifest or blob."""


class DigestMismatch(RegistryError):
    """Content read from (or sent to) a registry does not match its digest."""
