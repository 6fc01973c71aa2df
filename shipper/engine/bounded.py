"""docker-py's answers read within bounds: an engine's answer is hostile input like any other.

docker-py reads an answer whole (``response.content``) and splits a progress
stream (load, push, pull) into JSON values with a buffer that grows until a
value ends. A hostile engine that sends an endless body, or one JSON value
that never closes, would grow shipper's memory without end; a chunk declared
a few exabytes long was read as one piece. Here whole answers stop at
``BODY_LIMIT`` (as the quick channel's do, quickget.py) and each message of a
stream at ``MESSAGE_LIMIT``, read in pieces of ``READ_SIZE``; a whole answer must come
within ``ANSWER_TIME`` (a progress stream, as long as its transfer, has each
read's timeout only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from shipper.engine import quickget
from shipper.engine.quickget import BODY_LIMIT, READ_SIZE, BadAnswer, overdue

MESSAGE_LIMIT = 1 << 20  # one progress message; an engine's are a few hundred bytes


def read_whole(response: Any) -> None:
    """Read a ``requests`` answer's body now, at most ``BODY_LIMIT`` bytes (after any content decoding), and keep it
    as its ``content``. Raises ``BadAnswer`` (the connection closed) past the bound."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > BODY_LIMIT:
        response.close()
        raise BadAnswer(f"the engine's answer is {declared[:20]} bytes long: more than shipper reads ({BODY_LIMIT >> 20} MiB)")
    body = bytearray()
    # read1: what has arrived, up to READ_SIZE (read waits for all of it: a trickle would never get to the check).
    # Over a socket; paramiko's channel file (docker-py over ``ssh -- docker system dial-stdio``) has no read1.
    # (urllib3 before 2.0 has no read1 of its own.)
    underlying = getattr(getattr(response.raw, "_fp", None), "fp", None)
    read = getattr(response.raw, "read1", None) if hasattr(underlying, "read1") else None
    read = read or response.raw.read
    deadline = time.monotonic() + quickget.ANSWER_TIME
    try:
        while piece := read(READ_SIZE, decode_content=True):
            body += piece
            if len(body) > BODY_LIMIT:
                raise BadAnswer(f"the engine's answer is longer than shipper reads ({BODY_LIMIT >> 20} MiB)")
            overdue(deadline)
    except BadAnswer:
        response.close()
        raise
    response._content = bytes(body)
    response._content_consumed = True


def json_messages(response: Any, action: str) -> Iterator[Any]:
    """The JSON values of a progress stream, each as it arrives.

    An engine writes one value a line (Go's ``json.Encoder``); values run together on one line are read too."""
    decoder = json.JSONDecoder()
    pending = b""
    try:
        for piece in response.raw.stream(READ_SIZE, decode_content=True):
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield from _values(line, decoder, action)
            if len(pending) > MESSAGE_LIMIT:
                raise BadAnswer(f"a message of the engine's {action} is longer than shipper reads ({MESSAGE_LIMIT >> 20} MiB)")
        yield from _values(pending, decoder, action)
    finally:
        response.close()


def _values(line: bytes, decoder: json.JSONDecoder, action: str) -> Iterator[Any]:
    text = line.decode("utf-8", errors="replace").strip()
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except ValueError:
            raise BadAnswer(f"a message of the engine's {action} is not JSON: {text[:80]!r}") from None
        yield value
        text = text[end:].lstrip()
