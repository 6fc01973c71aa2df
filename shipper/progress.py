"""How operations report progress without knowing who listens.

Operations call a ``Reporter``; the CLI passes one that draws bars on a
terminal or writes JSON lines, tests pass ``NullReporter``.
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def start(self, host: str, total: int | None) -> None:
        """Bytes start flowing to ``host``; ``total`` is an estimate, if known."""

    def advance(self, host: str, done: int) -> None:
        """``done`` bytes (in all) have gone to ``host``. Called often: throttle."""

    def finish(self, host: str, status: str) -> None:
        """``host`` is done: ``moved``, ``failed``, …"""


class NullReporter:
    """Reports nothing."""

    def start(self, host: str, total: int | None) -> None:
        pass

    def advance(self, host: str, done: int) -> None:
        pass

    def finish(self, host: str, status: str) -> None:
        pass
