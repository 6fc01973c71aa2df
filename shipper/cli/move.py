"""``shipper move``: images from one engine to others, tags intact."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from shipper.cli.options import env_of, finish, inventory_option, json_option, parse_rate
from shipper.cli.output import Env, human_size, short_id, table
from shipper.cli.progress import JSONLinesReporter, PlainLinesReporter
from shipper.errors import UsageError
from shipper.cli.targets import choose, complete_targets, open_inventory
from shipper.hostpool import exit_status_of
from shipper.ops.move_plan import MovePlan, RouteRequest
from shipper.transfer.plan import TargetPlan
from shipper.engine.pool import EnginePool
from shipper.ops.move_session import MoveSession
from shipper.ops.release_policy import directory_for, policy_for
from shipper.platforms import parse_platform
from shipper.transfer.limits import RateLimits
from shipper.progress import Reporter

if TYPE_CHECKING:
    from shipper.ops.move_from_registry import RegistryPlan
    from shipper.transfer.commit import TargetResult

# A move through a registry imports its modules (the registry client, the pulls) where it starts: a move over SSH,
# least of all its dry-run, does not load them (#20).


@click.command()
@inventory_option
@json_option
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--from", "source", metavar="HOST", help="The host whose engine has the images.", shell_complete=complete_targets)
@click.option("--from-registry", "from_registry", metavar="NAME|HOST:PORT", help="Or take them from a registry (no engine pushes): each target pulls, through its site cache (registry_mirror) where it has one.")
@click.option("--to", "target", required=True, metavar="TARGET", help="Hosts: a host, a group, an Ansible host pattern (web:&prod, all:!db), or ssh://user@host:port.", shell_complete=complete_targets)
@click.option("--via", type=click.Choice(["ssh", "relay", "direct", "registry"]), default=None, help="ssh: host to host, else through here; relay: over SSH through here; direct: Docker API to API; registry: push, then pull on each target. Default: ssh when every engine is behind SSH.")
@click.option("--registry", "registry_name", metavar="NAME|HOST:PORT", help="--via registry: the registry (a name from the inventory's registries:, or an address).")
@click.option("--ca", metavar="FILE", help="--via registry: the registry's CA (default: the inventory's, /etc/docker/certs.d/HOST:PORT/ca.crt, the system's).")
@click.option("--insecure", is_flag=True, help="--via registry: do not verify the registry's TLS (--tls-verify=false says the same).")
@click.option("--compress", type=click.Choice(["auto", "zlib", "none"]), default="auto", show_default=True,
              help="Over SSH (host to host, and the relay's leg to each target): compress what shrinks where the link is slow (auto), wherever it shrinks (zlib), or never.")
@click.option("--limit-rate", metavar="RATE", help="At most RATE bytes a second to each target (20M, 500K), as curl's --limit-rate.")
@click.option("--limit-total", metavar="RATE", help="At most RATE bytes a second to all targets together.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Move that platform of each image (linux/arm64): chosen from a multi-platform image where the source's store holds several (Docker 28+, containerd store), else checked.")
@click.option("--retry", type=click.IntRange(0, 100), default=0, metavar="N", help="A target whose link fails is tried again, up to N times (2 s, 4 s, … apart), resuming where the cut left it.")
@click.option("--no-resume", is_flag=True, help="Over SSH: load each target's stream in one piece (a plain docker load), keeping nothing if the link is cut.")
@click.option("--force", is_flag=True, help="Send even to targets that already have the images under those tags.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--no-store-read", is_flag=True, help="Host to host: always run docker save on the source, never read its engine's layer store directly.")
@click.option("--verify-key", "verify_keys", multiple=True, metavar="PUB", help="Move only signed releases (shipper sign): checked on the source before anything crosses, and on each target before its tags move.")
@click.option("--releases", "releases_dir", metavar="DIR", help="Where the signed release statements are (default: $SHIPPER_RELEASES, else releases/ here).")
@click.pass_context
def move(
    ctx: click.Context, inventory_path: str, as_json: bool, images: tuple[str, ...], source: str, target: str,
    via: RouteRequest | None, registry_name: str | None, ca: str | None, insecure: bool, compress: str, limit_rate: str | None, limit_total: str | None,
    platform: str | None, retry: int, no_resume: bool, force: bool, dry_run: bool, no_store_read: bool, verify_keys: tuple[str, ...],
    releases_dir: str | None, from_registry: str | None,
) -> None:  # fmt: skip
    """Move IMAGE... from one host's engine to TARGET's engines, tags intact.

    The images are read once and streamed to every target that lacks them,
    each target getting only the layers it does not hold already. Each target
    loads them untagged, checks every image, and only then moves its tags, so
    a failure leaves a target's tags as they were.
    """
    env = env_of(ctx)
    if bool(source) == bool(from_registry):
        raise UsageError("say where the images are: --from HOST or --from-registry REGISTRY (one of them)")
    if from_registry:
        from shipper.ops.move_from_registry import plan_from_registry, run_from_registry
        from shipper.ops.move_registry import route_for

        if via or registry_name or limit_rate or limit_total or retry or no_resume or no_store_read:
            raise UsageError(
                "--from-registry takes --to, --force, --dry-run, --platform, --verify-key, --releases, --ca and --insecure "
                "(the engines pull: routes, rates and resuming are theirs)"
            )  # fmt: skip
        inventory = open_inventory(inventory_path, target)
        targets = choose(env, inventory, target)
        if not targets:
            return
        policy = policy_for(targets, [Path(k) for k in verify_keys], directory_for(releases_dir))
        with EnginePool() as engines:
            with surveying(env, as_json, [t.name for t in targets]):
                plan = plan_from_registry(
                    route_for(inventory, from_registry, ca, insecure), images, targets, engines, force, parse_platform(platform) if platform else None, policy
                )  # fmt: skip
            _show_registry_plan(env, as_json, plan, dry_run)
            if dry_run:
                _report_errors(env, as_json, [(t.host.name, t.error) for t in plan.targets])
                finish(exit_status_of([t.error for t in plan.targets]))
                return
            with reporter_for(env, as_json) as reporter:
                results = run_from_registry(plan, engines, reporter)
        _report_results(env, as_json, results)
        return
    assert source is not None
    inventory = open_inventory(inventory_path, source, target)
    sources = choose(env, inventory, source)
    if len(sources) != 1:
        raise UsageError(f"--from must name one host; {source!r} names {len(sources)}")
    targets = choose(env, inventory, target)
    if not targets:
        return  # the warning said why; an empty group is nothing to do, as in Ansible
    if (ca or insecure) and not (via == "registry" or registry_name):
        raise UsageError("--ca and --insecure are for --via registry", hint="add --via registry --registry NAME|HOST:PORT")
    registry = None
    if via == "registry" or registry_name:
        from shipper.ops.move_registry import route_for

        registry = route_for(inventory, registry_name, ca, insecure)
    if registry_name and via is None:
        via = "registry"
    with MoveSession(
        sources[0], targets, images, via, prestart=not dry_run, store_read=not no_store_read, registry=registry,
        limits=RateLimits(parse_rate(limit_rate, "--limit-rate") if limit_rate else None, parse_rate(limit_total, "--limit-total") if limit_total else None),
        compress=compress, platform=parse_platform(platform) if platform else None, resume=not no_resume,
        releases=policy_for(targets, [Path(k) for k in verify_keys], directory_for(releases_dir)),
    ) as session:
        _move(env, session, force, dry_run, as_json, retry)


def _move(env: Env, session: MoveSession, force: bool, dry_run: bool, as_json: bool, retries: int = 0) -> None:
    with surveying(env, as_json, [t.name for t in session.targets if t.name != session.source.name]):
        plan = session.plan(force)
    if as_json:
        env.json_line({"event": "plan", "dry_run": dry_run, **plan.to_json()})
    else:
        _print_plan(env, plan)
    planned_errors = [t.error for t in plan.targets]
    if dry_run:
        _report_errors(env, as_json, [(t.host.name, t.error) for t in plan.targets])
        finish(exit_status_of(planned_errors))
        return
    def retrying(result: TargetResult, attempt: int, wait: float) -> None:
        assert result.error is not None
        if as_json:
            env.json_line({"event": "retry", "host": result.host, "attempt": attempt, "wait_seconds": wait, "after": result.error.to_json()})
        else:
            print(f"{result.host}: {result.error.message}; trying again in {wait:.0f} s (attempt {attempt} of {retries + 1})", file=env.stderr, flush=True)

    with reporter_for(env, as_json) as reporter:
        results = session.run(plan, reporter, retries, retrying)
    _report_results(env, as_json, results)


def _report_results(env: Env, as_json: bool, results: list[TargetResult]) -> None:
    if as_json:
        for result in results:
            env.json_line({"event": "result", **result_json(result)})
        env.summary.update(results_summary(results))
    else:
        env.out(table(["HOST", "RESULT", "SENT", "TIME", "RATE"], [result_row(r) for r in results]))
    _report_errors(env, as_json, [(r.host, r.error) for r in results])
    finish(exit_status_of([r.error for r in results]))


@contextlib.contextmanager
def surveying(env: Env, as_json: bool, hosts: list[str]) -> Iterator[None]:
    """Planning asks the source and every target what they hold (seconds over far links): say so, as a phase per
    host in JSON and in a log, and as a spinner on a terminal, which the plan then replaces."""
    if as_json or not env.stderr.isatty():
        reporter: Reporter = JSONLinesReporter(env.json_line) if as_json else PlainLinesReporter(env.stderr)
        for host in hosts:
            reporter.phase(host, "surveying")
        yield
        return
    from shipper.cli.bars import spinner  # rich: for a terminal only

    shown = ", ".join(hosts[:4]) + (f" and {len(hosts) - 4} more" if len(hosts) > 4 else "")
    with spinner(env.stderr, f"surveying {shown}"):
        yield


@contextlib.contextmanager
def reporter_for(env: Env, as_json: bool) -> Iterator[Reporter]:
    if as_json:
        yield JSONLinesReporter(env.json_line)
    elif env.stderr.isatty():
        from shipper.cli.bars import BarsReporter  # rich: for a terminal only

        with BarsReporter(env.stderr) as bars:
            yield bars
    else:
        yield PlainLinesReporter(env.stderr)  # a log: a line per phase and every few seconds


def _print_plan(env: Env, plan: MovePlan) -> None:
    env.out(f"plan: {len(plan.images)} image(s) from {plan.source.name} via {plan.route} ({plan.route_reason})")
    extras = [f"compression {plan.compress} (on each target's SSH link)"] if plan.route == "ssh" and plan.compress != "none" else []
    extras += [f"at most {human_size(plan.limits.per_target)}/s a target"] if plan.limits.per_target else []
    extras += [f"at most {human_size(plan.limits.total)}/s in all"] if plan.limits.total else []
    extras += [f"platform {plan.platform} of each image"] if plan.platform is not None else []
    resumable = [t.host.name for t in plan.targets if t.host.name in plan.receivers]
    extras += [f"layer by layer to {', '.join(resumable)} where python3 is (a cut keeps what arrived)"] if resumable else []
    caches: dict[str, list[str]] = {}
    for target in plan.targets:
        if plan.registry is not None and target.host.name in plan.registry.mirrors:
            caches.setdefault(str(plan.registry.mirrors[target.host.name].address), []).append(target.host.name)
    extras += [f"{', '.join(hosts)} pull from the site cache {cache} (it fetches from {plan.registry.address} once)" for cache, hosts in caches.items()
               if plan.registry is not None]  # fmt: skip
    if extras:
        env.out("      " + "; ".join(extras))
    env.out(table(["IMAGE", "ID", "SIZE"], [[i.name or i.requested, short_id(i.id), human_size(i.size)] for i in plan.images]))
    rows = [[t.host.name, t.action, *_crossing(plan, t), _why(t)] for t in plan.targets]
    env.out(table(["TARGET", "ACTION", "TO SEND", "LAYERS", "WHY"], rows))
    env.out()


def _show_registry_plan(env: Env, as_json: bool, plan: RegistryPlan, dry_run: bool) -> None:
    if as_json:
        env.json_line({"event": "plan", "dry_run": dry_run, **plan.to_json()})
        return
    env.out(f"plan: {len(plan.images)} image(s) from registry {plan.route.address} ({plan.platform}), each target pulls by digest")
    caches: dict[str, list[str]] = {}
    for target in plan.targets:
        if target.host.name in plan.route.mirrors:
            caches.setdefault(str(plan.route.mirrors[target.host.name].address), []).append(target.host.name)
    if caches:
        env.out("      " + "; ".join(f"{', '.join(hosts)} pull from the site cache {cache}" for cache, hosts in caches.items()))
    env.out(table(["IMAGE", "ID", "SIZE", "DIGEST"], [[i.name or i.requested, short_id(i.id), human_size(i.size), short_id(p.digest)] for i, p in zip(plan.images, plan.pulls)]))
    rows = []
    for t in plan.targets:
        send, present, size, there = plan.crossing(t)
        crossing = [human_size(size), f"{len(send)} to send" + (f", {len(present)} there ({human_size(there)})" if present else "")] if t.send_ids else ["-", "-"]
        rows.append([t.host.name, t.action, *crossing, _why(t)])
    env.out(table(["TARGET", "ACTION", "TO SEND", "LAYERS", "WHY"], rows))
    env.out()


def _crossing(plan: MovePlan, target: TargetPlan) -> list[str]:
    """What crosses to ``target``: estimated bytes, and layers sent against layers it holds already."""
    if not target.send_ids:
        return ["-", "-"]
    send, present = plan.layers_for(target)
    there = f", {len(present)} there ({human_size(plan.present_bytes_for(target))})" if present else ""
    return [human_size(plan.bytes_for(target)), f"{len(send)} to send{there}"]


def _why(target: TargetPlan) -> str:
    if target.error is not None:
        return target.error.message
    resumed = f"{target.resumed} layer(s) arrived before a cut: the rest goes" if target.resumed else ""
    return "; ".join(x for x in (target.reason, resumed, target.thin_note) if x)


def results_summary(results: list[TargetResult]) -> dict[str, Any]:
    """Counts per status and the bytes that crossed, for the summary event."""
    counts: dict[str, Any] = {"targets": len(results)}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    counts["bytes_sent"] = sum(r.bytes_sent for r in results)
    return counts


def result_row(result: TargetResult) -> list[str]:
    rate = f"{human_size(result.bytes_sent / result.seconds)}/s" if result.bytes_sent and result.seconds else "-"
    sent = human_size(result.bytes_sent) if result.bytes_sent else "-"
    elapsed = f"{result.seconds:.1f}s" if result.seconds else "-"
    status = f"{result.status} (attempt {result.attempts}, {human_size(result.bytes_before)} sent before)" if result.attempts > 1 else result.status
    return [result.host, status, sent, elapsed, rate]


def result_json(result: TargetResult) -> dict[str, Any]:
    data: dict[str, Any] = {"host": result.host, "status": result.status, "bytes_sent": result.bytes_sent, "seconds": round(result.seconds, 3)}
    if result.route_taken:
        data["route"] = result.route_taken
    if result.bytes_on_wire is not None:
        data["bytes_on_wire"] = result.bytes_on_wire
    if result.round_trips is not None:
        data["round_trips"] = result.round_trips
    if result.source_read:
        data["source_read"] = result.source_read
    if result.attempts > 1:
        data["attempts"], data["bytes_before"] = result.attempts, result.bytes_before
    if result.note:
        data["note"] = result.note
    if result.error is not None:
        data["error"] = result.error.to_json()
    return data


def _report_errors(env: Env, as_json: bool, errors: list[tuple[str, Any]]) -> None:
    if as_json:
        return
    for _, error in errors:
        if error is not None:
            env.error(error)
