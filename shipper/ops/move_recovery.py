"""When a first attempt could not do: recovery decided after a delivery, for moves and bundle loads.

- A target that lacked a layer its stream left out gets everything, once.
- The registry route: a containerd-store target whose pull left the image
  incomplete (moby/moby#49784) gets it over SSH instead, only what it lacks.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Callable, Sequence

from shipper.errors import ShipperError
from shipper.ops.arrival import incomplete, untag
from shipper.ops.engines import EnginePool
from shipper.ops.move_plan import MovePlan, TargetPlan, choose_route, streams_oci, target_view, thin_skip
from shipper.transfer import Delivery
from shipper.progress import Reporter

Deliver = Callable[[MovePlan, list[TargetPlan]], Delivery]  # a plan's targets, sent again

# A load that needed a layer the stream left out: the classic store (20.10's and 25+'s layouts), the containerd store.
_LOST_LAYER = re.compile(r"(layer\.tar|blobs/sha256/[0-9a-f]{64}): no such file or directory|content digest sha256:[0-9a-f]{64}: not found"
    r'|layer "[^"]+" not found')


def resend_in_full(
    senders: Sequence[TargetPlan], delivery: Delivery, engines: EnginePool, layers: dict[str, tuple[str, ...]],
    contents: dict[str, str], send_again: Callable[[list[TargetPlan]], Delivery],
) -> None:  # fmt: skip
    """Targets that lacked a layer their stream left out get everything, once (``send_again``). Either
    their load failed (an image removed meanwhile: nothing new is there), or it made an image that is
    not whole: the containerd store accepts a left-out layer whose snapshot it has even when its content
    store lacks that layer's uncompressed blob (the base came by a pull), and the image then inspects
    without layers; loading it again whole completes it, under the same ID. Moves and bundle loads."""
    why = {t.host.name: reason for t in senders if t.skip_layers and (reason := _lacked_a_layer(t, delivery, engines, layers, contents))}
    lost = [t for t in senders if t.host.name in why]
    if not lost:
        return
    full = [replace(t, skip_layers=frozenset()) for t in lost]
    again = send_again(full)
    for target in full:
        name = target.host.name
        delivery.sent[name] = delivery.sent.get(name, 0) + again.sent.get(name, 0)
        delivery.errors[name] = again.errors.get(name)
        _arrival_of(delivery, again, name)
        delivery.target_notes[name] = f"{why[name]}: sent again with every layer"


def send_incomplete_pulls_over_ssh(
    plan: MovePlan, senders: Sequence[TargetPlan], delivery: Delivery, reporter: Reporter, engines: EnginePool, deliver: Deliver,
) -> None:  # fmt: skip
    """The registry route: a containerd-store target whose pull left the image incomplete gets it
    the other way (SSH, host to host where it can; else the Docker API), whole.

    Docker's pull into that store does not download layers the engine already holds unpacked (they
    came by ``docker load``), and the image it makes lacks their content (moby/moby#49784): it runs,
    but cannot be saved or pushed (28.5 inspects it without layers; 26.1 leaves it out of its list). The reference the pull
    added is removed first, so nothing points at the incomplete image."""
    if plan.route != "registry":
        return
    stuck = [
        t for t in senders
        if t.store == "containerd" and delivery.errors.get(t.host.name) is None and incomplete(t, delivery, engines, plan.layers, plan.contents)
    ]  # fmt: skip
    if not stuck:
        return
    route, _, host_to_host = choose_route(plan.source, [t.host for t in stuck], None)
    oci = streams_oci(engines.get(plan.source).info(), host_to_host, plan.store_read)
    images = [img for img in plan.images if img.id in plan.send_ids]
    stuck = [replace(t, skip_layers=thin_skip(target_view(t.host, engines), images, oci)) for t in stuck]  # only what it lacks
    again_plan = replace(plan, route=route, host_to_host=host_to_host, targets=tuple(stuck), registry=None)
    notes = {}
    for target in stuck:
        name = target.host.name
        notes[name] = untag(target, engines, delivery.untag_after.pop(name, []))
        delivery.local_ids.pop(name, None)
        reporter.start(name, again_plan.bytes_for(target))
    again = deliver(again_plan, stuck)
    resend_in_full(stuck, again, engines, again_plan.layers, again_plan.contents, lambda full: deliver(replace(again_plan, targets=tuple(full)), full))
    for target in stuck:
        name = target.host.name
        delivery.sent[name] = delivery.sent.get(name, 0) + again.sent.get(name, 0)
        delivery.errors[name] = again.errors.get(name)
        _arrival_of(delivery, again, name)
        why = "its engine's pull left the image incomplete (Docker skips layers it holds unpacked: moby/moby#49784)"
        delivery.target_notes[name] = "; ".join(x for x in (f"{why}: sent over {again.path} instead", notes[name]) if x)


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


def _arrival_of(delivery: Delivery, again: Delivery, name: str) -> None:
    """The target's outcome is now the second attempt's: so is its arrival check, if that attempt made one."""
    delivery.arrivals.pop(name, None)
    if name in again.arrivals:
        delivery.arrivals[name] = again.arrivals[name]
