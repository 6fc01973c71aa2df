"""The JSON-lines schema every command follows under ``--json`` (version ``SCHEMA``; docs/json.md shows it).

One JSON object per line, each with an ``event``:

- ``begin`` first: ``schema`` (this version), ``command``, ``version`` (shipper's);
- the command's own events (``COMMANDS`` says which);
- ``error`` if the command failed: ``status`` (the exit status) and ``error``
  (``type``, ``message``, ``hint``);
- ``summary`` last: ``command``, ``status``, ``ok``, and the command's counts.

``problems`` checks a command's output against it; the tests run it on the
output of every command they run with ``--json``.
"""

from __future__ import annotations

import json
from typing import Any

from shipper.cli.output import SCHEMA

# event -> the fields it always has, and their JSON types
EVENTS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "begin": {"schema": int, "command": str, "version": str},
    "summary": {"command": str, "status": int, "ok": bool},
    "error": {"status": int, "error": dict},
    # hosts, ping, images
    "host": {"name": str, "groups": list, "engine": dict, "ssh": dict, "vars": dict},
    "ping": {"host": str, "engine_url": str, "ok": bool},
    "engine": {"host": str, "ok": bool},
    "image": {"name": str, "id": str, "size": int, "hosts": list},
    # move, bundle load: the plan, progress per target, a result per target
    "plan": {"source": str, "route": str, "images": list, "targets": list},
    "start": {"host": str},
    "progress": {"host": str, "bytes": int},
    "phase": {"host": str, "phase": str},
    "key": {"private": str, "public": str, "encrypted": bool},
    "signed": {"id": str, "tags": list, "statement": str},
    "retry": {"host": str, "attempt": int, "after": dict},
    "finish": {"host": str, "status": str},
    "result": {"host": str, "status": str},
    # bundles
    "created": {"files": list, "bytes": int, "images": list},
    "verified": {"sound": bool, "bytes": int, "images": list},
    "pushed": {"uploaded": int, "already_there": int, "tags": list},
    "have": {"output": str, "layers": dict},
    # registries
    "repositories": {"registry": str, "repositories": list},
    "tags": {"repository": str, "tags": list},
    "manifest": {"reference": str, "digest": str},
    "deleted": {"digest": str, "repository": str, "tags": list},
    "login": {"registry": str, "username": str},
    "registry": {"address": str, "changed": bool, "changes": list},
    "registry_status": {},
    "down": {"host": str, "done": list},
    "gc": {"eligible_blobs": int},
}

COMMON = {"begin", "summary", "error"}
PROGRESS = {"start", "progress", "phase", "finish"}
# command -> the events it may write besides begin, error and summary
COMMANDS: dict[str, set[str]] = {
    "hosts": {"host"},
    "ping": {"ping"},
    "images": {"engine", "image"},
    "move": {"plan", "result", "retry"} | PROGRESS,
    "play": {"result"},
    "bundle create": {"created"} | PROGRESS,
    "bundle verify": {"verified"},
    "bundle load": {"verified", "result"} | PROGRESS,
    "bundle push": {"pushed"},
    "bundle have": {"have"},
    "registry ls": {"repositories"},
    "registry tags": {"tags"},
    "registry inspect": {"manifest"},
    "registry rm": {"deleted"},
    "registry login": {"login"},
    "registry up": {"registry"},
    "registry status": {"registry_status"},
    "registry down": {"down"},
    "registry gc": {"gc"},
    "key generate": {"key"},
    "sign": {"signed"},
}


def problems(stdout: str, status: int) -> list[str]:
    """What in ``stdout`` (a command's --json output, ending with exit ``status``) breaks the schema."""
    found: list[str] = []
    events: list[dict[str, Any]] = []
    for number, line in enumerate(stdout.splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            found.append(f"line {number} is not JSON: {line[:80]!r}")
            continue
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            found.append(f"line {number} has no event: {line[:80]!r}")
            continue
        events.append(event)
    if not events:
        return found + ["no events at all"]
    first, last = events[0], events[-1]
    if first["event"] != "begin" or first.get("schema") != SCHEMA:
        found.append(f"the first event is {first['event']!r}, not begin with schema {SCHEMA}")
    if last["event"] != "summary" or last.get("status") != status:
        found.append(f"the last event is {last['event']!r} with status {last.get('status')!r}, not summary with status {status}")
    if status and not any(e["event"] == "error" for e in events) and last.get("ok") is not False:
        found.append(f"exit status {status} but the summary says ok")
    allowed = COMMON | COMMANDS.get(str(first.get("command")), set())
    for event in events:
        kind = event["event"]
        if kind not in allowed:
            found.append(f"{first.get('command')!r} may not write a {kind!r} event")
            continue
        for field, expected in EVENTS[kind].items():
            if field not in event:
                found.append(f"a {kind!r} event lacks {field!r}")
            elif not isinstance(event[field], expected) or isinstance(event[field], bool) and expected is int:
                found.append(f"{kind}.{field} is {type(event[field]).__name__}, not {getattr(expected, '__name__', expected)}")
    return found
