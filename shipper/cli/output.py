"""Where the CLI writes, and how: aligned tables, JSON, one-line errors."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from typing import IO, Any
from collections.abc import Mapping, Sequence

from shipper import __version__
from shipper.errors import ShipperError


SCHEMA = 1  # the version of the JSON-lines schema (docs/json.md; checked by tests/unit/test_json_schema.py)


@dataclass
class Env:
    """The streams a command writes to; tests pass their own.

    Under ``--json`` every command writes JSON lines to stdout, one event per
    line: ``begin`` first (with the schema version), the command's own events,
    an ``error`` event if it failed, and ``summary`` last, with the exit status."""

    stdout: IO[str] = field(default_factory=lambda: sys.stdout)
    stderr: IO[str] = field(default_factory=lambda: sys.stderr)
    traceback: bool = False
    json_mode: bool = False
    command: str = ""
    summary: dict[str, Any] = field(default_factory=dict)  # what the command adds to its summary event
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def out(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def document(self, document: Any) -> None:
        """One indented JSON document (``hosts --list``: ansible-inventory's format, not the event stream)."""
        print(json.dumps(document, indent=2, sort_keys=False, default=str), file=self.stdout)

    def json_line(self, event: Any) -> None:
        """One JSON document on one line (a stream of events, for --json)."""
        with self._lock:  # progress lines come from worker threads
            print(json.dumps(event, default=str), file=self.stdout, flush=True)

    def begin(self, command: str) -> None:
        self.json_mode, self.command = True, command
        self.json_line({"event": "begin", "schema": SCHEMA, "command": command, "version": __version__})

    def emit(self, event: str, data: Mapping[str, Any]) -> None:
        self.json_line({"event": event, **data})

    def end(self, status: int, error: ShipperError | None = None) -> None:
        """The closing events of a --json command: its error, if any, then the summary."""
        if not self.json_mode:
            return
        if error is not None:
            self.json_line({"event": "error", "status": status, "error": error.to_json()})
        self.json_line({"event": "summary", "command": self.command, "status": status, "ok": status == 0, **self.summary})
        self.json_mode = False

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

