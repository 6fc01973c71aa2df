"""Carry out a move plan: one save, streamed to every target that needs it, then each target's commit.

Delivery is here (host to host, relay, direct, registry); what happens on each
target after the bytes arrived (check, tags, rollback) is transfer/commit.py; what is
done when a first attempt could not do is move_recovery.py.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Sequence

from shipper.archive.fanout import apply_limits
from shipper.engine import connect
from shipper.errors import (
    EngineError, ShipperError,
)
from shipper.hostpool import for_each_host, worker_pool
from shipper.imageref import parse
from shipper.inventory.model import Host
from shipper.transfer.commit import TargetResult, finish_target, results_in_order
from shipper.engine.pool import EnginePool
from shipper.ops.move_plan import MovePlan, RouteRequest, choose_route
from shipper.transfer.plan import TargetPlan
from shipper.ops.move_recovery import incomplete_pulls, merge, resend_in_full
from shipper.transfer.store_upload import StoreUploader
from shipper.transfer import Delivery, SourceFailed, SourceProgram, deliver, host_to_host, make_sink, make_source
from shipper.platforms import Platform
from shipper.progress import NullReporter, Reporter

if TYPE_CHECKING:
    from shipper.ops.move_registry import Pushed, RegistryRoute

__all__ = ["SourceFailed", "TargetResult", "run_move"]


def _through_here(plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter) -> Delivery:
    """Relay (ssh) or direct: the source's stream passes through this process."""
    receivers, compress = plan.receivers, plan.compress if plan.route == "ssh" else "none"
    with worker_pool(min(len(senders), 16) or 1) as logins:  # each waits for its target's first line
        made = list(logins.map(lambda t: make_sink(plan.route, t.host, t.skip_layers, receivers.get(t.host.name), compress), senders))
    sinks = {t.host.name: (t.host, sink) for t, sink in zip(senders, made)}
    apply_limits([sink for _, sink in sinks.values()], plan.limits.per_target, plan.limits.total)
    source = make_source(plan.route, plan.source, plan.save)

    delivery = deliver(_path(plan), source, sinks, plan.check_ids, plan.layers, reporter)
    if delivery.stream_error is not None:  # explained once the delivery is over, here where the plan is known
        explained = _explain_source_failure(plan, delivery.stream_error)
        delivery.errors = {name: explained if error is delivery.stream_error else error for name, error in delivery.errors.items()}
    return delivery


def _recover(plan: MovePlan, senders: Sequence[TargetPlan], delivery: Delivery, reporter: Reporter, engines: EnginePool) -> None:
    """Second plans, each decided after the delivery before it (move_recovery.py), delivered here."""
    resend = resend_in_full(senders, delivery, engines, plan.layers, plan.contents)
    if resend is not None:
        merge(delivery, _deliver_again(replace(plan, targets=tuple(resend.targets)), reporter, engines), resend)
    fallback = incomplete_pulls(plan, senders, delivery, engines)
    if fallback is not None and fallback.plan is not None:
        again = _deliver_again(fallback.plan, reporter, engines)
        inner = resend_in_full(fallback.targets, again, engines, fallback.plan.layers, fallback.plan.contents)
        if inner is not None:
            merge(again, _deliver_again(replace(fallback.plan, targets=tuple(inner.targets)), reporter, engines), inner)
        merge(delivery, again, fallback)


def _deliver_again(plan: MovePlan, reporter: Reporter, engines: EnginePool) -> Delivery:
    for target in plan.targets:
        reporter.start(target.host.name, plan.bytes_for(target))
    return _deliver(plan, plan.targets, reporter, None, engines)


def _path(plan: MovePlan) -> str:
    return "relay" if plan.route == "ssh" else "direct"


def _through_registry(
    plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter, engines: EnginePool, uploader: StoreUploader | None = None
) -> Delivery:  # fmt: skip
    """The source's layer store is uploaded (else its engine pushes), each target's engine pulls.
    ``uploader``: the upload program, started on the source while the move was planned."""
    # Here, not at the top: the registry's client (and requests) cost a move that goes host to host 70 ms before its
    # program on the source can start.
    from shipper.ops.move_registry import pull_everywhere, push_images
    from shipper.ops.registry_upload import can_upload_from_store, push_from_store

    assert plan.registry is not None
    if uploader is not None and not can_upload_from_store(plan.source, plan.store_read, plan.source_store):
        uploader.cancel()
    names = [(img.name or img.id, img.id) for img in plan.images if img.id in plan.send_ids]
    reporter.start(plan.source.name, sum(img.size for img in plan.images if img.id in plan.send_ids))
    read, notes = "push", list[str]()
    try:
        pushed: list[Pushed] | None = None
        if can_upload_from_store(plan.source, plan.store_read, plan.source_store):
            layers = [(name, image_id, plan.layers[image_id]) for name, image_id in names]
            pushed, why = push_from_store(plan.source, layers, plan.registry, reporter, uploader)
            if pushed is None:
                notes = [f"docker push on {plan.source.name} (its layer store could not be read: {why})"]
            else:  # why: what went up ("" when the registry held every image already and nothing was read)
                read, notes = ("store" if why else ""), [why]
        if pushed is None:
            pushed = push_images(plan.source, names, plan.registry, reporter, engines)
    except ShipperError as exc:
        reporter.finish(plan.source.name, "failed")
        error = _explain_source_failure(plan, exc)
        return Delivery("registry", source_read=read, errors={t.host.name: error for t in senders})
    reporter.finish(plan.source.name, "pushed")
    delivery = pull_everywhere([t.host for t in senders], pushed, plan.registry, reporter, engines)
    delivery.source_read = read
    delivery.note = "; ".join(note for note in [*notes, *(p.note for p in pushed)] if note)
    return delivery


def _deliver(
    plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter, program: SourceProgram | StoreUploader | None, engines: EnginePool
) -> Delivery:  # fmt: skip
    delivery = _deliver_by_route(plan, senders, reporter, program, engines)
    delivery.resumable = {t.host.name for t in senders if t.host.name in plan.receivers}  # a cut there keeps what arrived
    return delivery


def _deliver_by_route(
    plan: MovePlan, senders: Sequence[TargetPlan], reporter: Reporter, program: SourceProgram | StoreUploader | None, engines: EnginePool
) -> Delivery:  # fmt: skip
    """Host to host when planned and available, else through this machine."""
    if plan.route == "registry":
        if isinstance(program, SourceProgram):
            program.cancel()
        return _through_registry(plan, senders, reporter, engines, program if isinstance(program, StoreUploader) else None)
    if isinstance(program, StoreUploader):
        program.cancel()
        program = None
    if plan.host_to_host:
        keys = {t.host.name: t.host_key for t in senders if t.host_key}
        hosts = [t.host for t in senders]
        skips = {t.host.name: t.skip_layers for t in senders}
        if program is not None:
            attempt = program.send(hosts, keys, plan.layers, reporter, skips, plan.check_ids, plan.limits, plan.compress, plan.save, plan.receivers)
        else:
            attempt = host_to_host(
                plan.source, hosts, keys, plan.layers, reporter, skips, plan.store_read, plan.check_ids, plan.limits, plan.compress, plan.save,
                plan.receivers,
            )  # fmt: skip
        if attempt.available:
            explained: dict[int, ShipperError] = {}  # one source error is shared by every target: explain it once
            for name, error in attempt.errors.items():
                if error is not None:
                    attempt.errors[name] = explained.setdefault(id(error), _explain_source_failure(plan, error))
                    if attempt.source_read == "store" and "invalid diffID" in error.message:
                        attempt.errors[name] = _damaged_store(plan, error)
            return attempt
        delivery = _through_here(plan, senders, reporter)
        delivery.note = f"host to host unavailable ({attempt.reason}): sent through this machine"
        return delivery
    return _through_here(plan, senders, reporter)


def _damaged_store(plan: MovePlan, error: ShipperError) -> ShipperError:
    """A layer read from the source's layer store (not hashed there: the target's load hashes it) reached a target
    other than its config says: the store is damaged, or changed while read. Nothing was made under the tag."""
    return EngineError(
        f"a layer read from {plan.source.describe()}'s layer store is not what its image says "
        f"({error.message.rsplit('failed: ', 1)[-1]}): that store is damaged, or the layer changed while it was read",
        hint=f"run the move again with --no-store-read (docker save on {plan.source.name} then reads the image), "
        f"and check {plan.source.name}'s disk; the target's tags are as they were",
    )


def _explain_source_failure(plan: MovePlan, error: ShipperError) -> ShipperError:
    """The engine's words for a save of a removed image are cryptic; say it plainly. So is an archive
    a containerd store wrote without an image's content."""
    if plan.source_store == "containerd" and "which the archive does not hold" in error.message:
        names = ", ".join(img.name or img.id for img in plan.images if img.id in plan.send_ids)
        return EngineError(
            f"docker save on {plan.source.describe()} left out the content of {names} ({error.message.rsplit(': ', 1)[-1]}): "
            "its containerd image store lacks it (pulled while its layers were already unpacked there: moby/moby#49784)",
            hint=f"remove it on {plan.source.name} and pull it again, or bring it there whole with shipper move --via ssh",
        )  # fmt: skip
    try:
        with connect(plan.source) as engine:  # rarely needed: not worth keeping a connection for
            gone = [img for img in plan.images if img.id in plan.send_ids and engine.inspect_image(img.save_as or img.id) is None]
    except ShipperError:
        return error
    if not gone:
        return error
    names = ", ".join(img.name or img.id for img in gone)
    return EngineError(
        f"save on {plan.source.describe()} failed: {names} was removed from it during the move",
        hint=f"put the image back on {plan.source.name} (build, pull or load it), then run the same command again",
    )


def run_move(
    plan: MovePlan, reporter: Reporter | None = None, engines: EnginePool | None = None, program: SourceProgram | StoreUploader | None = None
) -> list[TargetResult]:
    """Execute ``plan``; one result per target, in the plan's order.

    ``engines``: the connections planning opened, to reuse (else new ones, closed at the end).
    ``program``: the host-to-host program, already started on the source (see MoveSession).
    """
    with contextlib.ExitStack() as stack:
        return _run(plan, reporter or NullReporter(), engines or stack.enter_context(EnginePool()), program)


def prestart_program(
    source: Host, others: Sequence[Host], images: Sequence[str], via: RouteRequest | None, registry: RegistryRoute | None, store_read: bool,
    platform: Platform | None,
) -> SourceProgram | StoreUploader | None:  # fmt: skip
    """The program a move will run on its source (the host-to-host sender, or the registry upload), started now so
    that its SSH login and start-up overlap the planning; None where the move will not use one."""
    if not others:
        return None
    if via == "registry" and registry is not None:
        from shipper.ops.registry_upload import can_upload_from_store

        if can_upload_from_store(source, store_read, "classic"):
            return StoreUploader(source)
    if choose_route(source, others, via, registry)[2]:
        names = [str(parse(i)) for i in images]  # checked names only reach the source's command line
        keys = [k for t in others for k in t.ssh.identity_files]
        return SourceProgram(source, keys, names, store_read, str(platform) if platform is not None else "", early=others)
    return None


def _run(plan: MovePlan, reporter: Reporter, engines: EnginePool, program: SourceProgram | StoreUploader | None) -> list[TargetResult]:
    started = time.monotonic()
    senders = [t for t in plan.targets if t.action == "send"]
    delivery = None
    if senders:
        for target in senders:
            reporter.start(target.host.name, plan.bytes_for(target))
        delivery = _deliver(plan, senders, reporter, program, engines)
        _recover(plan, senders, delivery, reporter, engines)
    elif program is not None:
        program.cancel()
    movers = [t for t in plan.targets if t.action in ("send", "tag")]
    by_name = {t.host.name: t for t in movers}
    layers, contents = plan.layers, plan.contents
    outcomes = for_each_host(
        [t.host for t in movers], lambda h: finish_target(by_name[h.name], delivery, started, reporter, engines, layers, contents, plan.releases)
    )
    results = results_in_order(plan.targets, {o.host.name: o.value for o in outcomes}, engines)
    return [_with_round_trips(result, target, engines) for result, target in zip(results, plan.targets)]


def _with_round_trips(result: TargetResult, target: TargetPlan, engines: EnginePool) -> TargetResult:
    engine = engines.peek(target.host)
    return replace(result, round_trips=engine.round_trips) if engine is not None else result
