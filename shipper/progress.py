"""How operations report progress without knowing who listens.

Operations call a ``Reporter``; the CLI passes one that draws bars on a
terminal or writes JSON lines, tests pass ``NullReporter``.
"""

from __future__ import annotations

from typing import Literal, Protocol

# What a target is doing, in order: bytes flow (sending), its engine finishes the load (loading),
# shipper checks every image arrived whole (checking), then points the tags (tagging).
# A target's phases, in order: its survey while the plan is made; waiting for the source's first byte (docker save
# exports before it writes); bytes flowing; the engine loading; shipper checking what arrived; the tags moving.
Phase = Literal["surveying", "reading", "sending", "loading", "checking", "tagging"]


class Reporter(Protocol):
    def start(self, host: str, total: int | None) -> None:
        """Bytes start flowing to ``host``; ``total`` is an estimate, if known."""

    def advance(self, host: str, done: int) -> None:
        """``done`` bytes (in all) have gone to ``host``. Called often: throttle."""

    def phase(self, host: str, phase: Phase) -> None:
        """``host`` moved on to ``phase``."""

    def finish(self, host: str, status: str) -> None:
        """``host`` is done: ``moved``, ``failed``, …"""


class NullReporter:
    """Reports nothing."""

    def start(self, host: str, total: int | None) -> None:
        pass

    def advance(self, host: str, done: int) -> None:
        pass

    def phase(self, host: str, phase: Phase) -> None:
        pass

    def finish(self, host: str, status: str) -> None:
        pass
