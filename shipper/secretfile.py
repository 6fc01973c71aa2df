"""Secrets as users hand them over: the first line of a file, or of stdin (``-``), never a command-line argument."""

from __future__ import annotations

import sys
from pathlib import Path

from shipper.errors import UsageError


def first_line(path: str, what: str) -> str:
    """The first line of ``path`` (``-``: stdin); ``what`` names it in errors ("password", "passphrase")."""
    try:
        text = sys.stdin.readline() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise UsageError(f"the {what} file {path} is empty")
    return line
