"""The move planner, from data: what a target holds and what is asked, in; what crosses, out.

Each file in ``plans/`` is one case: a target's view (its store, image IDs,
tags, the layer stacks its images stand on), the images to move, the route,
and what the plan must say. Short names stand for digests ("I1" an image,
"L1" a layer, "C1" a content key). No engine is involved: ``target_plan``
decides from the survey alone (the survey itself is proven on real engines).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from shipper.archive.layers import chain_ids
from shipper.errors import Origin
from shipper.inventory.model import EngineEndpoint, Host, SSHSettings
from shipper.transfer.plan import SourceImage, TargetView, target_plan

CASES = sorted((Path(__file__).parent / "plans").glob("*.json"))
HOST = Host("b", (), {}, SSHSettings("b", "b"), EngineEndpoint("unix:///b.sock", "unix"), Origin("hosts.yml", 1))


def digest(short: str) -> str:
    return "sha256:" + hashlib.sha256(short.encode()).hexdigest()


def view_of(data: dict[str, Any]) -> TargetView:
    chains = frozenset(c for stack in data.get("holds", []) for c in chain_ids([digest(x) for x in stack]))
    return TargetView(
        tags={name: digest(i) for name, i in data.get("tags", {}).items()},
        ids=frozenset(digest(i) for i in data.get("ids", [])),
        host_key=None,
        chains=chains if data["store"] != "podman" else frozenset(),
        store=data["store"],
        content_of={digest(i): c for i, c in data.get("content_of", {}).items()},
        unlisted=frozenset(digest(i) for i in data.get("unlisted", [])),
        carrier_tops={digest(i): chain_ids([digest(x) for x in stack])[-1] for i, stack in data.get("carriers", {}).items()},
    )


def image_of(data: dict[str, Any]) -> SourceImage:
    layers = tuple(digest(x) for x in data["layers"])
    return SourceImage(data["name"], data["name"], digest(data["id"]), 1000 * len(layers), layers, (1000,) * len(layers), data.get("content", ""))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_the_plan_for_a_target_follows_from_what_it_holds(case: Path) -> None:
    data = json.loads(case.read_text())
    expect = data["expect"]

    plan = target_plan(
        HOST, view_of(data["view"]), [image_of(i) for i in data["images"]], data.get("force", False),
        data.get("route", "ssh"), data.get("stream_oci", True), data.get("source_store", "classic"),
    )  # fmt: skip

    assert plan.action == expect["action"], data["about"]
    if "send" in expect:
        assert plan.send_ids == tuple(digest(i) for i in expect["send"]), data["about"]
    if "tags" in expect:
        assert plan.tags == tuple((name, digest(i)) for name, i in expect["tags"]), data["about"]
    if "skip" in expect:
        assert plan.skip_layers == frozenset(digest(x) for x in expect["skip"]), data["about"]
    if "note_has" in expect:
        assert expect["note_has"] in plan.thin_note if expect["note_has"] else plan.thin_note == "", (data["about"], plan.thin_note)
    if "carriers" in expect:
        assert plan.carriers == tuple(sorted(digest(i) for i in expect["carriers"])), data["about"]
    if "aliases" in expect:
        assert plan.aliases == {digest(a): digest(b) for a, b in expect["aliases"].items()}, data["about"]


def test_every_case_says_what_it_is_about() -> None:
    assert len(CASES) >= 12
    assert all(json.loads(case.read_text()).get("about") for case in CASES)
