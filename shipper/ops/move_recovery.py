"""When a first attempt could not do: a second plan, decided by the use case after a delivery.

Nothing here delivers: each function looks at what a delivery left on the
targets and says which targets to send again, how, and why (a ``Retry``); the
use case (move_run, bundle) delivers it and ``merge``s the outcome, so that a
target is judged by its last attempt.

- ``resend_in_full``: a target that lacked a layer its stream left out gets everything, once.
- ``incomplete_pulls``: the registry route: a containerd-store target whose pull left the image
  incomplete (moby/moby#49784) gets it over SSH instead, only what it lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Sequence

from shipper.errors import ShipperError
from shipper.transfer.commit import incomplete, untag
from shipper.engine.pool import EnginePool
from shipper.ops.move_plan import MovePlan, choose_route
from shipper.transfer.plan import TargetPlan, streams_oci, thin_skip
from shipper.transfer.survey import target_view
from shipper.transfer import Delivery

# A load that needed a layer the stream left out: the classic store (20.10's and 25+'s layouts), the containerd store.
_LOST_LAYER = re.compile(r"(layer\.tar|blobs/sha256/[0-9a-f]{64}): no such file or directory|content digest sha256:[0-9a-f]{64}: not found"
    r'|layer "[^"]+" not found')
_INCOMPLETE_PULL = "its engine's pull left the image incomplete (Docker skips layers it holds unpacked: moby/moby#49784)"


@dataclass
class Retry:
    """A second attempt: the targets to send again (as they are to be sent), and why, per target."""

    targets: list[TargetPlan]
    why: dict[str, str]
    plan: MovePlan | None = None  # a move's second plan (its route may differ from the first's)
    says_route: bool = False  # the note names the route the second attempt took
    notes: dict[str, str] = field(default_factory=dict)  # what was done first (a reference taken off)


def resend_in_full(
    senders: Sequence[TargetPlan], delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str],
) -> Retry | None:  # fmt: skip
    """Targets that lacked a layer their stream left out: everything, once. Either their load failed (an
    image removed meanwhile: nothing new is there), or it made an image that is not whole: the containerd
    store accepts a left-out layer whose snapshot it has even when its content store lacks that layer's
    uncompressed blob (the base came by a pull), and the image then inspects without layers; loading it
    again whole completes it, under the same ID. Moves and bundle loads."""
    why = {t.host.name: reason for t in senders if t.skip_layers and (reason := _lacked_a_layer(t, delivery, engines, layers, contents))}
    lost = [replace(t, skip_layers=frozenset()) for t in senders if t.host.name in why]
    return Retry(lost, {n: f"{w}: sent again with every layer" for n, w in why.items()}) if lost else None


def incomplete_pulls(plan: MovePlan, senders: Sequence[TargetPlan], delivery: Delivery, engines: EnginePool) -> Retry | None:
    """The registry route: containerd-store targets whose pull left the image incomplete, to be sent the
    other way (SSH, host to host where it can; else the Docker API), only the layers they lack.

    Docker's pull into that store does not download layers the engine already holds unpacked (they came by
    ``docker load``), and the image it makes lacks their content (moby/moby#49784): it runs, but cannot be
    saved or pushed (28.5 inspects it without layers; 26.1 leaves it out of its list). The reference the
    pull added is removed first, so nothing points at the incomplete image."""
    if plan.route != "registry":
        return None
    stuck = [
        t for t in senders
        if t.store == "containerd" and delivery.errors.get(t.host.name) is None and incomplete(t, delivery, engines, plan.layers, plan.contents)
    ]  # fmt: skip
    if not stuck:
        return None
    route, _, host_to_host = choose_route(plan.source, [t.host for t in stuck], None)
    oci = streams_oci(engines.get(plan.source).info(), host_to_host, plan.store_read)
    images = [img for img in plan.images if img.id in plan.send_ids]
    stuck = [replace(t, skip_layers=thin_skip(target_view(t.host, engines), images, oci)) for t in stuck]  # only what it lacks
    notes = {}
    for target in stuck:
        name = target.host.name
        notes[name] = untag(target, engines, delivery.untag_after.pop(name, []))
        delivery.local_ids.pop(name, None)
    again_plan = replace(plan, route=route, host_to_host=host_to_host, targets=tuple(stuck), registry=None)
    return Retry(stuck, {t.host.name: _INCOMPLETE_PULL for t in stuck}, again_plan, says_route=True, notes=notes)


def merge(delivery: Delivery, again: Delivery, retry: Retry) -> None:
    """The retried targets' outcome is now the second attempt's (bytes add up; errors, arrival checks and notes are its)."""
    for target in retry.targets:
        name = target.host.name
        delivery.sent[name] = delivery.sent.get(name, 0) + again.sent.get(name, 0)
        delivery.errors[name] = again.errors.get(name)
        delivery.resumable.discard(name)
        if name in again.resumable:
            delivery.resumable.add(name)
        delivery.arrivals.pop(name, None)
        if name in again.arrivals:
            delivery.arrivals[name] = again.arrivals[name]
        why = f"{retry.why[name]}: sent over {again.route_taken} instead" if retry.says_route else retry.why[name]
        delivery.target_notes[name] = "; ".join(x for x in (why, again.target_notes.get(name, ""), retry.notes.get(name, "")) if x)


def _lacked_a_layer(
    target: TargetPlan, delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]], contents: dict[str, str]
) -> str:  # fmt: skip
    """Why the target could not do without the layers its stream left out ("" when it could, or failed otherwise)."""
    name = target.host.name
    if delivery.errors.get(name) is not None:
        return "it no longer held layers the plan left out" if _LOST_LAYER.search(_message(delivery.errors[name])) else ""
    if target.store != "containerd" or not incomplete(target, delivery, engines, layers, contents):
        return ""
    return "its containerd store holds layers the plan left out, but not their uncompressed content (they came by a pull)"


def _message(error: ShipperError | None) -> str:
    return error.message if error is not None else ""
