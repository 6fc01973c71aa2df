"""Where the CLI writes, and how: aligned tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import IO, Any
from collections.abc import Sequence

from shipper.errors import ShipperError


@dataclass
class Env:
    """The streams a command writes to; tests pass their own."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    traceback: bool = False

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def json(self, document: Any) -> None:
        print(json.dumps(document, indent=2, sort_keys=False, default=str), file=self.stdout)

    def json_line(self, event: Any) -> None:
        """One JSON document on one line (a stream of events, for --json on long operations)."""
        print(json.dumps(event, default=str), file=self.stdout, flush=True)

    def error(self, exc: ShipperError, prefix: str = "error") -> None:
        print(f"{prefix}: {exc.message}", file=self.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=self.stderr)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as left-aligned columns separated by two spaces."""
    cells = [[str(c) for c in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def human_size(size: float) -> str:
    """Bytes as Docker prints them (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


def short_id(image_id: str) -> str:
    """``sha256:0123456789ab…`` to the 12 hex digits Docker shows."""
    return image_id.split(":", 1)[-1][:12]

