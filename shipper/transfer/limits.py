"""How fast a move may send: per target (``--limit-rate``) and all targets together (``--limit-total``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RateLimits:
    """Bytes a second; None: no limit."""

    per_target: float | None = None
    total: float | None = None

    def __bool__(self) -> bool:
        return bool(self.per_target or self.total)

    def to_spec(self) -> dict[str, Any]:
        """As the source host's program takes them (archive/hostpipe.py)."""
        return {"target": self.per_target, "total": self.total}
