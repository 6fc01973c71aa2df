"""A playbook: YAML parsed and checked before anything runs.

    vars:                      # optional; values may be templates
      release: demo/app:1
    steps:
      - name: ship the release
        move: {images: ["{{ release }}"], from: build, to: web}
      - name: run it
        hosts: web
        container: {name: app, image: "{{ release }}", command: [sh, -c, "sleep 3600"]}

Each step has a ``name`` (a template), one kind key (below) holding its
fields, and, for kinds that act on engines one by one, ``hosts``; any step
may have ``when:`` (Jinja expressions, asked per host) and ``loop:`` (the
step once per ``item``). The YAML is parsed first and
string values are rendered afterwards (render.py), so a variable's value can
never inject YAML. Unknown kinds and keys, missing fields and wrong types are
errors naming the file, the line and the step, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper.errors import Origin, ShipperError
from shipper.yamlfile import LineDict, YAMLFileError, load_file


class PlaybookError(ShipperError):
    """The playbook is not valid: named with file, line and step."""


# kind -> (required fields, optional fields, whether the step takes hosts:)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]] = {
    "move": (("images", "from"), ("to", "via", "registry", "force", "platform"), True),
    "container": (("name", "image"), ("command", "env", "network", "ports", "volumes", "restart", "labels", "healthcheck"), True),
    "remove": ((), ("containers", "images"), True),
    "registry": (("host", "user", "password_file"), ("port", "address", "image", "data", "trust", "login", "mirror_of", "upstream_username",
                                                      "upstream_password_file", "upstream_ca"), False),
    "bundle": (("action", "file"), ("images", "from", "to", "registry", "username", "password_file", "platform", "key", "sign", "passphrase_file"), True),
    "gc": (("host", "user", "password_file"), ("port", "delete_untagged"), False),
    "login": (("registry", "user", "password_file"), (), True),
}
STEP_KEYS = ("name", "hosts", "when", "loop")
NO_ITEM: Any = object()  # a step outside any loop
BUNDLE_ACTIONS = ("create", "load", "push")


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    fields: dict[str, Any]  # raw (templates not yet rendered)
    hosts: str | None
    origin: Origin
    when: tuple[str, ...] = ()  # conditions (Jinja expressions), all true for a host to take part
    loop: Any = None  # a list, or a template that renders to one: the step runs once per item
    item: Any = field(default=NO_ITEM, compare=False)  # this run's item, in a loop

    def where(self) -> str:
        return f"{self.origin}, step {self.name!r}"


@dataclass(frozen=True)
class Playbook:
    path: Path
    vars: dict[str, Any] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()


def _fail(message: str, origin: Origin, step: str | None = None, hint: str | None = None) -> PlaybookError:
    return PlaybookError(f"{origin}{f', step {step!r}' if step else ''}: {message}", hint=hint)


def load_playbook(path: Path) -> Playbook:
    try:
        data = load_file(path)
    except YAMLFileError as exc:
        raise PlaybookError(exc.message, hint=exc.hint) from None
    if not isinstance(data, LineDict):
        raise _fail("a playbook is a mapping with steps: (and optionally vars:)", Origin(str(path), 1))
    for key in data:
        if key not in ("vars", "steps"):
            raise _fail(f"unknown key {key!r} at the top", data.origin(key), hint="a playbook has vars: and steps:")
    variables = data.get("vars") or LineDict()
    if not isinstance(variables, dict):
        raise _fail("vars: must be a mapping", data.origin("vars"))
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise _fail("steps: must be a list of steps", data.origin("steps") if "steps" in data else data.origin())
    parsed = [_step(raw, index, data.origin("steps")) for index, raw in enumerate(steps, 1)]
    names = [s.name for s in parsed]
    for step in parsed:
        if names.count(step.name) > 1:
            raise _fail("two steps have this name", step.origin, step.name, hint="give every step a name of its own")
    return Playbook(path, dict(variables), tuple(parsed))


def _step(raw: Any, index: int, where: Origin) -> Step:
    if not isinstance(raw, LineDict):
        raise _fail(f"step {index} must be a mapping (name:, a kind, its fields)", where)
    origin = raw.origin()
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"step {index} needs a name:", origin)
    kinds = [k for k in raw if k not in STEP_KEYS]
    known = [k for k in kinds if k in KINDS]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise _fail(f"unknown step kind or key {unknown[0]!r}", raw.origin(unknown[0]), name, hint=f"a step is one of: {', '.join(KINDS)}")
    if len(known) != 1:
        raise _fail("a step has exactly one kind" if known else "the step has no kind", origin, name, hint=f"one of: {', '.join(KINDS)}")
    kind = known[0]
    body = raw[kind]
    if not isinstance(body, LineDict):
        raise _fail(f"{kind}: must be a mapping of its fields", raw.origin(kind), name)
    required, optional, takes_hosts = KINDS[kind]
    for key in body:
        if key not in required + optional:
            raise _fail(f"unknown field {key!r} for {kind}", body.origin(key), name, hint=f"{kind} takes {', '.join(required + optional)}")
    for key in required:
        if key not in body:
            raise _fail(f"{kind} needs {key}:", body.origin(), name)
    hosts = raw.get("hosts")
    if hosts is not None and not takes_hosts:
        raise _fail(f"{kind} steps name their host in their fields, not hosts:", raw.origin("hosts"), name)
    if kind in ("container", "remove", "login") and hosts is None:
        raise _fail(f"{kind} needs hosts:", origin, name)
    if kind == "bundle" and body.get("action") not in BUNDLE_ACTIONS:
        raise _fail(f"bundle action must be one of {', '.join(BUNDLE_ACTIONS)}", body.origin("action"), name)
    for key in ("images", "command", "volumes", "containers"):
        if key in body and not isinstance(body[key], list):
            raise _fail(f"{key} must be a list", body.origin(key), name)
    for key in ("env", "labels", "ports", "healthcheck"):
        if key in body and not isinstance(body[key], dict):
            raise _fail(f"{key} must be a mapping", body.origin(key), name)
    return Step(name, kind, dict(body), None if hosts is None else str(hosts), origin, _when(raw, name), _loop(raw, name))


def _when(raw: LineDict, name: str) -> tuple[str, ...]:
    value = raw.get("when")
    if value is None:
        return ()
    conditions = value if isinstance(value, list) else [value]
    for condition in conditions:
        if not isinstance(condition, (str, bool)):
            raise _fail("when: must be a condition or a list of conditions", raw.origin("when"), name)
        if isinstance(condition, str) and ("{{" in condition or "{%" in condition):
            raise _fail(
                "when: is an expression already; write it without {{ }}", raw.origin("when"), name,
                hint="for example: when: release != 'none' and inventory_hostname in groups['web']",
            )  # fmt: skip
    return tuple(str(c).lower() if isinstance(c, bool) else c for c in conditions)


def _loop(raw: LineDict, name: str) -> Any:
    value = raw.get("loop")
    if value is not None and not isinstance(value, (list, str)):
        raise _fail("loop: must be a list, or a template that renders to one", raw.origin("loop"), name)
    return value
