"""Resumable loads: what a target runs to take a stream layer by layer (archive/receiver.py), and when.

A target whose engine keeps images in the classic store and which has
``python3`` takes the stream through the receiver: each layer that arrives
whole is loaded at once under an untagged carrier image, so a cut costs only
the layer under way. Elsewhere (the containerd store and podman, whose loads
of a stream without some layers follow other rules; a host without python3)
the target runs a plain ``docker load``, as before.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, Sequence

from shipper.archive import receiver
from shipper.archive.boot import HOST_PYTHON
from shipper.archive.wire import DECODER, LATE, LATE_STUB
from shipper.transfer.plan import SourceImage, TargetPlan

RECEIVER_CODE = receiver.script()
PLAIN_LOAD = "docker load -q"


def receiver_spec(target: TargetPlan, images: Sequence[SourceImage]) -> dict[str, Any] | None:
    """What the receiver on ``target`` is told (the images it lacks, the layers it holds), or None where it is not
    used: a target outside the classic store, or one taking nothing."""
    if target.action != "send" or target.store != "classic":
        return None
    sent = [img for img in images if img.id in target.send_ids and img.layers]
    if not sent:
        return None
    spec: dict[str, Any] = {
        "images": [{"layers": list(img.layers), "os": img.os or "linux", "architecture": img.architecture or "amd64"} for img in sent],
        "held": sorted(target.skip_layers),
    }
    if target.carriers:  # an interrupted move's, made by import (their IDs are the engine's): removed with the receiver's own
        spec["carriers"] = list(target.carriers)
    return spec


def _python(code: str, *args: str) -> str:
    return " ".join([HOST_PYTHON, "-c", shlex.quote(code), *(shlex.quote(a) for a in args)])


def load_command(spec: dict[str, Any] | None, ready: str | None = None, frames: bool = False) -> str:
    """The shell command a target runs to take the stream: the receiver where ``spec`` and python3 allow, else
    ``docker load``. ``ready``: a first line to print once running (host to host: the sender waits for it; it
    ends in ``-FRAMES`` when this end unframes, which it does only where python3 is, and ``frames`` asks for it;
    in ``-FRAMES-PACED`` when it also reports whether it keeps up: the receiver does)."""
    plain = f"echo {ready} && exec {PLAIN_LOAD}" if ready else f"exec {PLAIN_LOAD}"
    if spec is None and not frames:
        return plain
    if spec is not None:  # the receiver unframes its input itself, and tells the sender whether it keeps up
        take = _python(RECEIVER_CODE, json.dumps({**spec, "frames": True, "pace": True} if frames else spec, separators=(",", ":")))
    else:
        take = f"{_python(DECODER)} | {PLAIN_LOAD}"
    says = f"echo {ready}{('-FRAMES-PACED' if spec is not None else '-FRAMES') if frames else ''} && " if ready else ""
    return f"if command -v python3 >/dev/null 2>&1; then {says}{take}; else {plain}; fi"


def late_command(ready: str) -> str:
    """What a target runs when its login starts before the plan (host to host, wire.py's LATE): given its command
    once the plan has it. Without python3 there it is a plain ``docker load`` at once, as ``load_command``
    would make it there."""
    return f"if command -v python3 >/dev/null 2>&1; then echo {LATE} && exec {_python(LATE_STUB)}; else echo {ready} && exec {PLAIN_LOAD}; fi"
