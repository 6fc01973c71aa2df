"""Secrets as users hand them over: the first line of a file, or of stdin (``-``), never a command-line argument."""

from __future__ import annotations

import sys

from shipper.errors import UsageError


MAX_LINE = 64 << 10  # no password or passphrase is longer; /dev/zero or a log file given by mistake is refused


def first_line(path: str, what: str) -> str:
    """The first line of ``path`` (``-``: stdin); ``what`` names it in errors ("password", "passphrase")."""
    try:
        if path == "-":
            text = sys.stdin.readline(MAX_LINE + 1)
        else:
            with open(path, encoding="utf-8", errors="replace") as source:
                text = source.readline(MAX_LINE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if len(text) > MAX_LINE:
        raise UsageError(f"the {what} file {path} does not start with a line of at most {MAX_LINE} characters", hint=f"put the {what} alone on its first line")
    line = text.splitlines()[0] if text else ""
    if not line:
        raise UsageError(f"the {what} file {path} is empty")
    return line
