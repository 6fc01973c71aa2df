"""Running a playbook over the inventory: every step the library operation the CLI already has.

First everything is checked and rendered (facts gathered, templates filled
per host); then the steps run in order. Each step reports per host:
``changed``, ``unchanged``, ``failed`` (or ``skipped``: an earlier step failed
there). A host that failed takes no further part (unless nothing else is left
to do: then the run ends, or, with ``fail_fast``, at the first failure).
``check`` asks every step what it would change, and changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from shipper.engine import connect
from shipper.errors import Origin, ShipperError, UsageError
from shipper.inventory import select
from shipper.inventory.model import Host, Inventory
from shipper.ops import bundle as bundle_ops
from shipper.ops import bundle_push
from shipper.ops import containers
from shipper.ops import registry as registry_ops
from shipper import provision as registry_host
from shipper import signing
from shipper.engine.pool import EnginePool
from shipper.hostpool import for_each_host
from shipper.ops.move_plan import plan_move
from shipper.ops.move_registry import route_for
from shipper.ops.move_session import MoveSession
from shipper.platforms import parse_platform
from shipper.playbook.model import NO_ITEM, Playbook, PlaybookError, Step
from shipper.playbook.render import holds, render, render_native, render_vars
from shipper.playbook.inventory_vars import resolve as resolve_inventory_vars
from shipper.registry.credentials import from_password_file
from shipper.transport.ssh import SSHSession

Status = Literal["changed", "unchanged", "failed", "skipped"]
PER_HOST = ("container", "remove", "login")
STATUS_OF: dict[str, Status] = {"moved": "changed", "tagged": "changed", "unchanged": "unchanged", "failed": "failed", "skipped": "skipped"}


@dataclass
class HostResult:
    step: str
    host: str
    status: Status
    detail: str = ""
    error: ShipperError | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "host": self.host, "status": self.status}
        if self.detail:
            data["detail"] = self.detail
        if self.error is not None:
            data["error"] = self.error.to_json()
        return data


@dataclass
class Play:
    playbook: Playbook
    inventory: Inventory
    variables: dict[str, Any]
    limit: set[str] | None
    check: bool
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)

    def hosts(self, expression: str) -> list[Host]:
        chosen = select(self.inventory, expression)
        return [h for h in chosen if self.limit is None or h.name in self.limit]

    steps: tuple[Step, ...] = ()  # the playbook's steps with loops unrolled and names rendered

    def context(self, host: Host | None, item: Any = NO_ITEM) -> dict[str, Any]:
        looped = {} if item is NO_ITEM else {"item": item}
        if host is None:
            return {**self.variables, **looped}
        magic = {
            # Ansible's names for what a template knows of the inventory
            "inventory_hostname": host.name,
            "inventory_hostname_short": host.name.split(".")[0],
            "group_names": sorted(host.groups),
            "groups": {name: list(group.members) for name, group in self.inventory.groups.items()},
            "hostvars": {name: dict(other.vars) for name, other in self.inventory.hosts.items()},
        }
        host_info = {"name": host.name, "groups": list(host.groups)}
        known = {**self.variables, **looped, **magic, "host": host_info, "facts": self.facts.get(host.name, {})}
        inventory_vars = {k: v for k, v in host.vars.items() if isinstance(k, str) and k not in known}
        return {**resolve_inventory_vars(inventory_vars, known, host.origin), **known}

    def fields(self, step: Step, host: Host | None = None) -> dict[str, Any]:
        return dict(render(step.fields, self.context(host, step.item), step.origin, step.name))

    def takes_part(self, step: Step, host: Host | None) -> bool:
        """Whether ``step``'s ``when:`` holds for ``host`` (for the play, without one)."""
        return holds(step.when, self.context(host, step.item), step.origin, step.name)

    def gate(self, step: Step, hosts: Sequence[Host]) -> tuple[list[Host], list["HostResult"]]:
        """The hosts ``step`` runs on, and a skipped result for each one its ``when:`` leaves out."""
        kept = [h for h in hosts if self.takes_part(step, h)]
        left = [HostResult(step.name, h.name, "skipped", "when: not true here") for h in hosts if h not in kept]
        return kept, left


def _gather_facts(hosts: Sequence[Host]) -> dict[str, dict[str, Any]]:
    """What each engine is, for templates: ``facts.engine_version``, ``facts.arch``, …"""

    def facts(host: Host) -> dict[str, Any]:
        with connect(host) as engine:
            info = engine.info()
        return {"engine_version": info.version, "api_version": info.api_version, "arch": info.arch, "os": info.os, "image_store": info.image_store}

    return {o.host.name: o.value or {} for o in for_each_host(list(hosts), facts)}


def prepare(playbook: Playbook, inventory: Inventory, extra: dict[str, str], limit: str | None, check: bool) -> Play:
    """Everything that can be checked before anything runs: hosts, templates for every host."""
    variables = render_vars(playbook.vars, extra, Origin(str(playbook.path)))
    play = Play(playbook, inventory, variables, {h.name for h in select(inventory, limit)} if limit else None, check)
    play.steps = tuple(s for step in playbook.steps for s in _unrolled(play, step))
    every: dict[str, Host] = {}
    for step in play.steps:
        for host in _step_hosts(play, step):
            every[host.name] = host
    play.facts = _gather_facts(list(every.values()))
    for step in play.steps:  # render now: a template error stops the play before its first step
        hosts: list[Host | None] = list(_step_hosts(play, step)) if step.kind in PER_HOST else [None]
        for each in hosts:
            play.fields(step, each)
    return play


def _unrolled(play: Play, step: Step) -> list[Step]:
    """``step`` once per item of its ``loop:`` (``item`` in its templates), each with its name rendered."""
    items: list[Any] = [NO_ITEM]
    if step.loop is not None:
        value = render_native(step.loop, play.context(None), step.origin, step.name)
        if not isinstance(value, list):
            raise PlaybookError(f"{step.where()}: loop: must give a list, not {type(value).__name__} {str(value)[:80]!r}", hint="loop: [a, b], or a variable holding a list")
        items = value
    return [replace(step, item=item, name=str(render(step.name, play.context(None, item), step.origin, step.name))) for item in items]


def _step_hosts(play: Play, step: Step) -> list[Host]:
    try:
        if step.hosts is not None:
            return play.hosts(render(step.hosts, play.context(None, step.item), step.origin, step.name))
        return []
    except ShipperError as exc:
        raise PlaybookError(f"{step.where()}: {exc.message}", hint=exc.hint) from None


def run(play: Play, fail_fast: bool = False, on_result: Callable[[HostResult], None] | None = None) -> list[HostResult]:
    results: list[HostResult] = []
    for step in play.steps:
        step_results = _run_step(play, step)
        for result in step_results:
            if result.status == "failed":
                play.failed.add(result.host)
            results.append(result)
            if on_result is not None:
                on_result(result)
        if fail_fast and any(r.status == "failed" for r in step_results):
            break
    return results


def _run_step(play: Play, step: Step) -> list[HostResult]:
    handler = _HANDLERS[step.kind]
    try:
        if step.kind in ("registry", "gc") or step.kind == "bundle" and play.fields(step)["action"] != "load":
            if not play.takes_part(step, None):  # a step on one named host: its when: is asked once
                return [HostResult(step.name, _main_host(play, step), "skipped", "when: not true")]
        return handler(play, step)
    except ShipperError as exc:
        return [HostResult(step.name, _main_host(play, step), "failed", error=exc)]


def _main_host(play: Play, step: Step) -> str:
    fields = play.fields(step)
    return str(fields.get("host") or fields.get("from") or step.hosts or "-")


def _per_host(play: Play, step: Step, action: Callable[[Host, dict[str, Any]], tuple[Status, str]]) -> list[HostResult]:
    hosts, results = play.gate(step, _step_hosts(play, step))
    live = [h for h in hosts if h.name not in play.failed]
    results += [HostResult(step.name, h.name, "skipped", "an earlier step failed here") for h in hosts if h.name in play.failed]
    for outcome in for_each_host(live, lambda host: action(host, play.fields(step, host))):
        if outcome.error is not None:
            results.append(HostResult(step.name, outcome.host.name, "failed", error=outcome.error))
        else:
            status, detail = outcome.value or ("unchanged", "")
            results.append(HostResult(step.name, outcome.host.name, status, detail))
    return results


# -- step kinds ---------------------------------------------------------------------------------


def _container(play: Play, step: Step) -> list[HostResult]:
    def action(host: Host, f: dict[str, Any]) -> tuple[Status, str]:
        spec = containers.ContainerSpec(
            str(f["name"]), str(f["image"]), tuple(str(c) for c in f.get("command") or ()),
            tuple(sorted((str(k), str(v)) for k, v in (f.get("env") or {}).items())), str(f.get("network", "host")),
            tuple(sorted((str(k), str(v)) for k, v in (f.get("ports") or {}).items())), tuple(str(v) for v in f.get("volumes") or ()),
            str(f.get("restart", "unless-stopped")), tuple(sorted((str(k), str(v)) for k, v in (f.get("labels") or {}).items())),
            containers.healthcheck(f["healthcheck"]) if f.get("healthcheck") else (),
        )  # fmt: skip
        with connect(host) as engine:
            return containers.state(engine, spec, image_may_come=True) if play.check else containers.ensure(engine, spec)

    return _per_host(play, step, action)


def _remove(play: Play, step: Step) -> list[HostResult]:
    def action(host: Host, f: dict[str, Any]) -> tuple[Status, str]:
        done = []
        with connect(host) as engine:
            for name in f.get("containers") or ():
                change, what = containers.remove_container(engine, str(name), play.check)
                done += [what] if change == "changed" else []
            for reference in f.get("images") or ():
                change, what = containers.remove_image(engine, str(reference), play.check)
                done += [what] if change == "changed" else []
        return ("changed", "; ".join(done)) if done else ("unchanged", "")

    return _per_host(play, step, action)


def _login(play: Play, step: Step) -> list[HostResult]:
    def action(host: Host, f: dict[str, Any]) -> tuple[Status, str]:
        address = _registry_address(play, str(f["registry"]))
        credentials = from_password_file(str(f["user"]), _path(play, f["password_file"]))
        with SSHSession(host.ssh, host.name) as session:
            if registry_host.logged_in(session, address):
                return "unchanged", ""
            if play.check:
                return "changed", f"would log in to {address}"
            registry_host.docker_login(session, host, address, credentials.username, credentials.password)
        return "changed", f"logged in to {address}"

    return _per_host(play, step, action)


def _registry_address(play: Play, name: str) -> str:
    address, _ = registry_ops.resolve(name, play.inventory)
    return address.host


def _path(play: Play, value: Any) -> str:
    """A file named in the playbook, relative to the playbook's directory."""
    path = Path(str(value))
    return str(path if path.is_absolute() else play.playbook.path.parent / path)


def _single(play: Play, expression: str, step: Step) -> Host:
    hosts = select(play.inventory, expression)
    if len(hosts) != 1:
        raise UsageError(f"{step.where()}: {expression!r} must name one host")
    return hosts[0]


def _move(play: Play, step: Step) -> list[HostResult]:
    f = play.fields(step)
    source = _single(play, str(f["from"]), step)
    if source.name in play.failed:
        return [HostResult(step.name, source.name, "skipped", "an earlier step failed here")]
    targets, skipped = play.gate(step, [h for h in play.hosts(str(f.get("to") or step.hosts or "")) if h.name != source.name])
    skipped += [HostResult(step.name, h.name, "skipped", "an earlier step failed here") for h in targets if h.name in play.failed]
    targets = [h for h in targets if h.name not in play.failed]
    via = f.get("via")
    registry = None
    if f.get("registry"):
        registry = route_for(play.inventory, str(f["registry"]))
        via = via or "registry"
    images = [str(i) for i in f["images"]]
    force = bool(f.get("force", False))
    platform = parse_platform(str(f["platform"])) if f.get("platform") else None
    if play.check:
        with EnginePool() as engines:
            plan = plan_move(source, targets, images, via, force, engines, registry=registry, platform=platform)
        return skipped + [
            HostResult(step.name, t.host.name, "failed" if t.action == "failed" else "changed" if t.action in ("send", "tag") else "unchanged",
                       f"would {'send' if t.action == 'send' else 'tag'} {len(t.send_ids) or len(t.tags)} image(s)" if t.action in ("send", "tag") else "",
                       t.error)
            for t in plan.targets if t.action != "skip"
        ]  # fmt: skip
    with MoveSession(source, targets, images, via, registry=registry, platform=platform) as session:
        results = session.run(session.plan(force))
    return skipped + [HostResult(step.name, r.host, STATUS_OF[r.status], r.note, r.error) for r in results if r.status != "skipped"]


def _registry(play: Play, step: Step) -> list[HostResult]:
    f = play.fields(step)
    host = _single(play, str(f["host"]), step)
    if host.name in play.failed:
        return [HostResult(step.name, host.name, "skipped", "an earlier step failed here")]
    password = from_password_file(str(f["user"]), _path(play, f["password_file"])).password
    trust = tuple(play.hosts(str(f.get("trust", "all"))))
    mirror = None
    if f.get("mirror_of"):  # a site cache of that registry (registry up --mirror-of)
        upstream_password = _path(play, f["upstream_password_file"]) if f.get("upstream_password_file") else None
        upstream_ca = _path(play, f["upstream_ca"]) if f.get("upstream_ca") else None
        mirror = registry_ops.mirror_for(play.inventory, str(f["mirror_of"]), f.get("upstream_username"), upstream_password, upstream_ca)
    request = registry_host.UpRequest(
        host, {str(f["user"]): password}, port=int(f.get("port", 5000)), address=f.get("address"), image=str(f.get("image", "registry:2")),
        data=f.get("data"), trust=trust, login=bool(f.get("login", False)), mirror_of=mirror,
    )  # fmt: skip
    result = registry_host.up(request, check=play.check)
    return [HostResult(step.name, host.name, "changed" if result.changed else "unchanged", "; ".join(result.changes))]


def _gc(play: Play, step: Step) -> list[HostResult]:
    f = play.fields(step)
    host = _single(play, str(f["host"]), step)
    if play.check:
        return [HostResult(step.name, host.name, "changed", "would collect garbage (read-only while it runs)")]
    credentials = from_password_file(str(f["user"]), _path(play, f["password_file"]))
    result = registry_host.gc(host, int(f.get("port", 5000)), credentials, delete_untagged=bool(f.get("delete_untagged", False)))
    return [HostResult(step.name, host.name, "changed" if result.eligible_blobs else "unchanged", f"deleted {result.eligible_blobs} blob(s)")]


def _bundle(play: Play, step: Step) -> list[HostResult]:
    f = play.fields(step)
    path = Path(_path(play, f["file"]))
    listed = f.get("key") or []  # a public key or a list of them: one must verify the bundle (bundle --key)
    keys = [Path(_path(play, k)) for k in ([listed] if isinstance(listed, str) else listed) if k]
    if f["action"] == "load":
        targets, left = play.gate(step, [h for h in play.hosts(str(f.get("to") or step.hosts or "")) if h.name not in play.failed])
        if not targets:
            return left
        if play.check:
            with EnginePool() as engines:
                verified, _ = bundle_ops.prepare(path, targets, keys, engines)
                plans = bundle_ops.plan_targets(targets, verified, engines, False)
            return left + [HostResult(step.name, t.host.name, "failed" if t.action == "failed" else "changed" if t.action in ("send", "tag") else "unchanged",
                                      "would load the bundle" if t.action == "send" else "", t.error) for t in plans]  # fmt: skip
        _, results = bundle_ops.load(path, targets, keys=keys)
        return left + [HostResult(step.name, r.host, STATUS_OF[r.status], r.note, r.error) for r in results]
    if f["action"] == "create":
        source = _single(play, str(f["from"]), step)
        if path.exists():
            return [HostResult(step.name, source.name, "unchanged", f"{path} exists")]
        if play.check:
            return [HostResult(step.name, source.name, "changed", f"would write {path}")]
        chosen = parse_platform(str(f["platform"])) if f.get("platform") else None
        signer = None
        if f.get("sign"):
            passphrase = signing.read_passphrase(_path(play, f["passphrase_file"])) if f.get("passphrase_file") else None
            key = signing.load_private(Path(_path(play, f["sign"])), passphrase)
            signer = functools.partial(signing.sign, key)
        bundle_ops.create(source, [str(i) for i in f.get("images") or ()], path, compress=path.suffix == ".zst", platform=chosen, signer=signer)
        return [HostResult(step.name, source.name, "changed", f"wrote {path}")]
    address, spec = registry_ops.resolve(str(f["registry"]), play.inventory)
    access = registry_ops.Access(f.get("username"), _path(play, f["password_file"]) if f.get("password_file") else None)
    ready = bundle_push.verify_for_push(path, keys)  # before the registry is asked anything
    if play.check:
        return [HostResult(step.name, str(address), "changed", f"would push {path.name} (only missing blobs)")]
    with registry_ops.open_client(address, spec, access) as client:
        pushed = bundle_push.push_verified(path, client, ready)
    return [HostResult(step.name, str(address), "changed" if pushed.uploaded else "unchanged", f"{len(pushed.uploaded)} blob(s) uploaded")]


_HANDLERS: dict[str, Callable[[Play, Step], list[HostResult]]] = {
    "move": _move, "container": _container, "remove": _remove, "registry": _registry, "gc": _gc, "bundle": _bundle, "login": _login,
}  # fmt: skip

