"""The engine's answers to the receiver's requests (receiver_loads.py), read within bounds: an HTTP answer on a
socket the engine closes after it, its JSON messages, and what a load said. Standard library only: sent to the
target with receiver.py (see ``RECEIVER_MODULES`` there)."""

from __future__ import annotations

import json
import socket
import time
from typing import List, Optional, Tuple

ANSWER_LIMIT = 1 << 20  # bytes of an engine's answer read at most (a few lines of JSON; an image's inspection)


def read_answer(sock: socket.socket, deadline: Optional[float] = None) -> bytes:
    """The engine's whole answer (it closes the connection after it), at most ANSWER_LIMIT bytes; by ``deadline``
    (monotonic seconds) when given, else within the socket's own timeout per read (TimeoutError)."""
    pieces: List[bytes] = []
    have = 0
    while have <= ANSWER_LIMIT:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no whole answer in time")
            sock.settimeout(left)
        piece = sock.recv(65536)
        if not piece:
            break
        pieces.append(piece)
        have += len(piece)
    return b"".join(pieces)


def status_and_body(answer: bytes) -> Tuple[str, bytes]:
    head, found, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ")[1] if found and len(lines[0].split(" ")) > 1 else ""
    if any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower() for line in lines[1:]):
        body = dechunked(body)
    return status, body


def messages_of(answer: bytes) -> List[dict]:
    """The JSON messages of an engine's answer (a stream of objects)."""
    messages: List[dict] = []
    text = status_and_body(answer)[1].decode(errors="replace").strip()
    decoder = json.JSONDecoder()
    while text:
        try:
            value, end = decoder.raw_decode(text)
        except ValueError:
            break
        if isinstance(value, dict):
            messages.append(value)
        text = text[end:].lstrip()
    return messages


def answer_of(answer: bytes) -> Tuple[Optional[str], bytes]:
    """(None, what it loaded) from an engine's answer to a load, or (what it said went wrong, b"")."""
    status, body = status_and_body(answer)
    if not status:
        return "the engine's answer to the load was cut short", b""
    messages = messages_of(answer)
    if status != "200":
        said = next((str(m["message"]) for m in messages if "message" in m), body.decode(errors="replace").strip()[:300])
        return f"Error response from daemon: {said}", b""
    for message in messages:
        detail = message.get("errorDetail")
        if detail or message.get("error"):
            detail_said = detail.get("message") if isinstance(detail, dict) else None
            return str(detail_said or message.get("error") or detail), b""
    return None, "".join(str(m.get("stream", "")) for m in messages).encode()


def dechunked(body: bytes) -> bytes:
    out: List[bytes] = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)
