"""Run a container from an image, replacing it only when its spec or its image changed.

The spec (image ID, command, env, network, ports, volumes, restart policy,
labels) is fingerprinted into a label on the container: the same spec on a
running container means "unchanged"; anything else replaces it and waits
until the new one runs (and is healthy, when the image has a health check).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from shipper.engine import Engine
from shipper.errors import EngineError, UsageError

SPEC_LABEL = "io.shipper.spec"
WAIT_SECONDS = 60.0
SETTLE_SECONDS = 1.0
Change = Literal["changed", "unchanged"]


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    network: str = "host"  # host, none, bridge (lab engines run without a bridge)
    ports: tuple[tuple[str, str], ...] = ()  # ("8080/tcp", "80")
    volumes: tuple[str, ...] = ()  # "source:target[:ro]"
    restart: str = "unless-stopped"
    labels: tuple[tuple[str, str], ...] = field(default=())
    healthcheck: tuple[tuple[str, Any], ...] = ()  # Docker's Healthcheck (test, interval, timeout, retries, start_period: ns)

    def fingerprint(self, image_id: str) -> str:
        # A spec without a health check hashes as it did before there were health checks: no needless replacement.
        document = {**{k: v for k, v in vars(self).items() if k != "image" and (k != "healthcheck" or v)}, "image_id": image_id}
        return hashlib.sha256(json.dumps(document, sort_keys=True, default=list).encode()).hexdigest()


_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")


def duration_ns(value: Any, what: str) -> int:
    """``2s``, ``500ms``, ``1m30s`` (Docker's and compose's durations) as nanoseconds; a bare number is seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise UsageError(f"{what} {value!r} is not a duration", hint="write it as 2s, 500ms or 1m30s")
    return int(sum(float(n) * _UNITS[u] for n, u in parts))


def healthcheck(fields: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A playbook's ``healthcheck:`` (compose's keys) as the engine's Healthcheck: ``test`` a shell command or a list."""
    test = fields.get("test")
    if isinstance(test, str):
        command = ["CMD-SHELL", test]
    elif isinstance(test, list) and test and all(isinstance(t, str) for t in test):
        command = test if test[0] in ("CMD", "CMD-SHELL", "NONE") else ["CMD", *test]
    else:
        raise UsageError("healthcheck needs test: a shell command, or a list (the command and its arguments)")
    found: dict[str, Any] = {"test": tuple(command)}
    for key in ("interval", "timeout", "start_period"):
        if key in fields:
            found[key] = duration_ns(fields[key], f"healthcheck {key}")
    if "retries" in fields:
        if not isinstance(fields["retries"], int) or isinstance(fields["retries"], bool) or fields["retries"] < 1:
            raise UsageError(f"healthcheck retries must be a whole number from 1, not {fields['retries']!r}")
        found["retries"] = fields["retries"]
    return tuple(sorted(found.items()))


def _binds(volumes: tuple[str, ...]) -> dict[str, str]:
    binds = {}
    for volume in volumes:
        source, _, target = volume.partition(":")
        if not source or not target:
            raise UsageError(f"volume {volume!r} is not source:target[:ro]")
        binds[source] = target
    return binds


def state(engine: Engine, spec: ContainerSpec, image_may_come: bool = False) -> tuple[Change, str]:
    """What ``ensure`` would do, without doing it: ("changed" and why) or ("unchanged", "").

    ``image_may_come``: a plan (``--check``) in which an earlier step would bring the image."""
    image = engine.inspect_image(spec.image)
    if image is None and image_may_come:
        return "changed", f"would run container {spec.name} from {spec.image} (not there yet: an earlier step must bring it)"
    if image is None:
        raise EngineError(f"image {spec.image} is not on {engine.host.describe()}", hint="move it there first (a move step before this one)")
    current = engine.container(spec.name)
    if current is None:
        return "changed", f"would create container {spec.name}"
    if (current["Config"].get("Labels") or {}).get(SPEC_LABEL) != spec.fingerprint(image.id):
        return "changed", f"would replace container {spec.name} (its spec or image changed)"
    if not current["State"]["Running"]:
        return "changed", f"would start container {spec.name} again (it is {current['State']['Status']})"
    return "unchanged", ""


def ensure(engine: Engine, spec: ContainerSpec) -> tuple[Change, str]:
    """Make ``spec`` run on ``engine``; whether that changed anything, and what."""
    change, why = state(engine, spec)
    if change == "unchanged":
        return change, ""
    image = engine.inspect_image(spec.image)
    assert image is not None
    labels = {**dict(spec.labels), SPEC_LABEL: spec.fingerprint(image.id)}
    engine.remove_container(spec.name)
    engine.run_container(
        spec.name, image.id, dict(spec.env), _binds(spec.volumes), labels, restart=spec.restart, network_mode=spec.network,
        command=list(spec.command) or None, ports=dict(spec.ports),
        healthcheck={k: list(v) if k == "test" else v for k, v in spec.healthcheck} or None,
    )  # fmt: skip
    _wait_running(engine, spec.name)
    return "changed", why.replace("would ", "", 1)


def _wait_running(engine: Engine, name: str) -> None:
    """Until the container runs (and is healthy, if it has a health check), and still does a moment later:
    a command that crashes at once under a restart policy looks "running" between its restarts."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        current: dict[str, Any] | None = engine.container(name)
        status = current["State"] if current else {}
        health = (status.get("Health") or {}).get("Status")
        if status.get("Running") and health in (None, "healthy"):
            time.sleep(SETTLE_SECONDS)
            again = engine.container(name) or {}
            stayed = bool(again.get("State", {}).get("Running")) and again.get("RestartCount") == (current or {}).get("RestartCount")
            if stayed:
                return
            raise EngineError(
                f"container {name} on {engine.host.describe()} does not stay up (it exits and restarts)",
                hint=f"look at its output: docker logs {name}",
            )
        if current is not None and not status.get("Running") and status.get("Status") in ("exited", "dead"):
            raise EngineError(
                f"container {name} on {engine.host.describe()} exited with status {status.get('ExitCode')} right after it started",
                hint=f"look at its output: docker logs {name}",
            )
        if health == "unhealthy" or time.monotonic() > deadline:
            raise EngineError(f"container {name} on {engine.host.describe()} is not running and healthy after {WAIT_SECONDS:.0f} s (health: {health})")
        time.sleep(0.2)


def remove_container(engine: Engine, name: str, check: bool) -> tuple[Change, str]:
    if engine.container(name) is None:
        return "unchanged", ""
    if not check:
        engine.remove_container(name)
    return "changed", f"{'would remove' if check else 'removed'} container {name}"


def remove_image(engine: Engine, reference: str, check: bool) -> tuple[Change, str]:
    if engine.inspect_image(reference) is None:
        return "unchanged", ""
    if not check:
        if _has_other_names(engine, reference):
            engine.untag(reference)  # only this name goes; the image stays for its other names
        else:
            engine.remove_image(reference)
    return "changed", f"{'would remove' if check else 'removed'} image {reference}"


def _has_other_names(engine: Engine, reference: str) -> bool:
    details = engine.inspect_image(reference)
    return details is not None and len(details.tags) + len(details.digests) > 1
