"""``shipper move``: images arrive with the same ID and tags, by each route, to one target or many."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image, image_id
from tests.conftest import ShipperRunner, events, one
from tests.integration.helpers import image_id_of, remove, tags_of, write_inventory

APP = SyntheticImage("lab/app:1", (Layer(6 << 20, "app-base"), Layer(2 << 20, "app-mid", "text"), Layer(64 << 10, "app-top")))
BUSYBOX = busybox_image()


@pytest.fixture(scope="module")
def on_a(lab: Lab) -> Lab:
    lab.load_images("a", [APP, BUSYBOX])
    return lab


@pytest.mark.parametrize("via", ["ssh", "relay", "direct"])
def test_a_multi_layer_image_and_a_runnable_one_arrive_identical(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, via: str) -> None:
    remove(on_a, "b", APP.name, BUSYBOX.name)

    result = shipper("move", APP.name, BUSYBOX.name, "--from", "a", "--to", "b", "--via", via, "-i", ssh_inventory)

    assert result.status == 0, result.stderr
    assert image_id_of(on_a, "b", APP.name) == image_id(APP)
    assert image_id_of(on_a, "b", BUSYBOX.name) == image_id(BUSYBOX)
    assert on_a.docker("b", "run", "--rm", "--network", "none", BUSYBOX.name, "echo", "busybox on b").stdout == "busybox on b\n"
    assert [line.split()[:2] for line in result.stdout.splitlines()[-2:]] == [["HOST", "RESULT"], ["b", "moved"]]


@pytest.mark.parametrize("via", ["ssh", "relay", "direct"])
def test_a_group_target_gets_the_images_on_every_host(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, via: str) -> None:
    remove(on_a, "b,c", APP.name)

    result = shipper("move", APP.name, "--from", "a", "--to", "web", "--via", via, "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    results = {e["host"]: e for e in events if e["event"] == "result"}
    assert {h: r["status"] for h, r in results.items()} == {"b": "moved", "c": "moved"}
    for host in ("b", "c"):
        assert image_id_of(on_a, host, APP.name) == image_id(APP)
        assert results[host]["bytes_sent"] > APP.layers[0].size


def test_direct_route_works_between_unix_socket_engines(shipper: ShipperRunner, on_a: Lab, local_inventory: str) -> None:
    remove(on_a, "c", BUSYBOX.name)

    result = shipper("move", BUSYBOX.name, "--from", "a", "--to", "c", "-i", local_inventory)

    assert result.status == 0, result.stderr
    assert "via direct" in result.stdout
    assert on_a.docker("c", "run", "--rm", "--network", "none", BUSYBOX.name, "echo", "ok").stdout == "ok\n"


def test_a_second_move_changes_nothing_and_force_sends_again(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    assert shipper("move", APP.name, "--from", "a", "--to", "b", "-i", ssh_inventory).status == 0

    again = shipper("move", APP.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json")
    forced = shipper("move", APP.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json", "--force")

    [again_result] = [json.loads(x) for x in again.stdout.splitlines() if '"result"' in x]
    assert (again_result["status"], again_result["bytes_sent"]) == ("unchanged", 0)
    [forced_result] = [json.loads(x) for x in forced.stdout.splitlines() if '"result"' in x]
    assert forced_result["status"] == "moved" and forced_result["bytes_sent"] > 0
    assert image_id_of(on_a, "b", APP.name) == image_id(APP)


def test_a_target_that_has_the_image_under_another_tag_only_gets_the_tag(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    remove(on_a, "c", APP.name, "lab/app:renamed")
    on_a.load_images("c", [SyntheticImage("lab/app:renamed", APP.layers)])
    old = SyntheticImage("lab/app:1", (Layer(1024, "an-older-app"),))
    on_a.load_images("c", [old])

    result = shipper("move", APP.name, "--from", "a", "--to", "c", "-i", ssh_inventory, "--json")

    [event] = [json.loads(x) for x in result.stdout.splitlines() if '"result"' in x]
    assert (event["status"], event["bytes_sent"]) == ("tagged", 0)
    assert tags_of(on_a, "c", image_id(APP)) == ["lab/app:1", "lab/app:renamed"]


def test_images_sharing_layers_send_them_once(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    base = Layer(8 << 20, "shared-8m")
    one, two = SyntheticImage("lab/one:1", (base, Layer(1024, "one"))), SyntheticImage("lab/two:1", (base, Layer(1024, "two")))
    on_a.load_images("a", [one, two])
    remove(on_a, "b", one.name, two.name)

    result = shipper("move", one.name, two.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json")

    [event] = [json.loads(x) for x in result.stdout.splitlines() if '"result"' in x]
    assert base.size < event["bytes_sent"] < base.size + (1 << 20)
    assert image_id_of(on_a, "b", one.name) == image_id(one) and image_id_of(on_a, "b", two.name) == image_id(two)


def test_dry_run_prints_the_plan_and_touches_nothing(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    remove(on_a, "b", APP.name)
    on_a.load_images("b", [BUSYBOX])
    on_a.docker("b", "tag", image_id(BUSYBOX), "lab/app:1")  # b has another image under the tag

    result = shipper("move", APP.name, "--from", "a", "--to", "web", "-i", ssh_inventory, "--dry-run", "--json")

    assert result.status == 0, result.stderr
    plan = one(result.stdout, "plan")
    assert plan["event"] == "plan" and plan["dry_run"] and plan["route"] == "ssh"
    b = next(t for t in plan["targets"] if t["host"] == "b")
    assert b["action"] == "send" and b["send"] == [image_id(APP)] and b["bytes_estimate"] > 8 << 20
    assert b["tags"] == [{"name": "lab/app:1", "id": image_id(APP), "before": image_id(BUSYBOX)}]
    assert image_id_of(on_a, "b", APP.name) == image_id(BUSYBOX)  # untouched
    assert image_id_of(on_a, "b", image_id(APP)) is None


def test_json_output_is_a_stream_of_events(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    remove(on_a, "b", APP.name)

    result = shipper("move", APP.name, "--from", "a", "--to", "b", "-i", ssh_inventory, "--json")

    kinds = [e["event"] for e in events(result.stdout)]
    assert kinds[:5] == ["begin", "phase", "plan", "start", "phase"] and kinds[-3:] == ["finish", "result", "summary"]
    phases = [e["phase"] for e in events(result.stdout, "phase")]
    assert phases == ["surveying", "reading", "sending", "loading", "checking", "tagging"]
    assert one(result.stdout, "summary") == {"event": "summary", "command": "move", "status": 0, "ok": True, "targets": 1, "moved": 1, "bytes_sent": one(result.stdout, "result")["bytes_sent"]}
    assert not result.stderr


def test_an_image_missing_on_the_source_is_named_with_close_names(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    result = shipper("move", "lab/app:2", "--from", "a", "--to", "b", "-i", ssh_inventory)

    assert result.status == 1
    assert f"\nerror: image lab/app:2 is not on a (ssh://root@{on_a.address('a')}:2222)" in "\n" + result.stderr
    assert "hint: did you mean lab/app:1" in result.stderr


def test_a_host_not_in_the_inventory_is_a_usage_error(shipper: ShipperRunner, ssh_inventory: str) -> None:
    result = shipper("move", APP.name, "--from", "a", "--to", "z", "-i", ssh_inventory)

    assert result.status == 2 and "'z' is neither a host nor a group" in result.stderr


def test_an_unreachable_target_fails_alone(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    remove(on_a, "b,c", APP.name)
    on_a.stop_engine("c")
    try:
        result = shipper("move", APP.name, "--from", "a", "--to", "b,c", "-i", ssh_inventory)
    finally:
        on_a.start_host("c")

    assert result.status == 4
    assert image_id_of(on_a, "b", APP.name) == image_id(APP)
    assert "error: cannot reach the engine on c" in result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[-3:]}
    assert rows == {"HOST": "RESULT", "b": "moved", "c": "failed"}


def test_via_ssh_is_refused_for_an_engine_not_behind_ssh(shipper: ShipperRunner, local_inventory: str) -> None:
    result = shipper("move", APP.name, "--from", "a", "--to", "b", "--via", "ssh", "-i", local_inventory)

    assert result.status == 2 and "use --via direct" in result.stderr


def test_a_target_that_refuses_the_key_or_whose_host_key_is_unknown_fails_with_a_hint(
    shipper: ShipperRunner, on_a: Lab, tmp_path: Path
) -> None:
    import subprocess

    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    inventory = write_inventory(
        tmp_path / "hosts.yml", {"a": {}, "b": {"ssh_key": str(stranger)}, "c": {"ssh_known_hosts_file": str(empty)}},
        ssh_config_file=str(on_a.ssh_config),
    )  # fmt: skip

    result = shipper("move", APP.name, "--from", "a", "--to", "b,c", "-i", inventory)

    assert result.status == 3
    assert "cannot log in to host b over SSH" in result.stderr and "hint: check ssh_user/ssh_key" in result.stderr
    assert "cannot connect to host c over SSH" in result.stderr and "is not in known_hosts" in result.stderr
    assert "Traceback" not in result.stderr


LONG = SyntheticImage("lab/long-move:1", tuple(Layer(24 << 20, f"long-{i}") for i in range(4)))


def test_a_move_without_a_terminal_logs_each_phase_and_periodic_progress(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a CI log of a long move shows (stderr is no terminal here); the interval is shortened to fit a test.
    on_a.load_images("a", [LONG])
    remove(on_a, "b", LONG.name, image_id(LONG))
    monkeypatch.setenv("SHIPPER_PROGRESS_INTERVAL", "0.02")

    result = shipper("move", LONG.name, "--from", "a", "--to", "b", "-i", ssh_inventory)

    assert result.status == 0, result.stderr
    lines = [line.split(" [")[0] for line in result.stderr.splitlines() if line.startswith("b: ")]
    assert lines[0] == "b: surveying"  # while the plan is made
    assert lines[1].startswith("b: reading (about ") and lines[1].endswith(" to send)")  # until the source's first byte
    assert lines[2].startswith("b: sending ")
    assert any(line.startswith("b: sending ") and " at " in line for line in lines[1:-4]), lines  # periodic lines while bytes flow
    assert [line.split(" (")[0].split(",")[0] for line in lines[-4:]] == ["b: loading", "b: checking", "b: tagging", "b: moved"]


DIGESTED = SyntheticImage("lab/digested:1", (Layer(1 << 20, "digested"),))


@pytest.mark.parametrize("route", ["ssh", "relay"])
def test_an_image_named_by_digest_moves_and_keeps_only_the_tag_written_with_it(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, route: str
) -> None:
    registry = on_a.plain_registry.host_port
    pushed_name = f"{registry}/lab/digested:1"
    try:
        on_a.load_images("a", [DIGESTED])
        on_a.docker("a", "tag", DIGESTED.name, pushed_name)
        assert on_a.docker("a", "push", "-q", pushed_name).returncode == 0  # the engine now knows its digest
        digest = on_a.docker("a", "inspect", "-f", "{{index .RepoDigests 0}}", pushed_name).stdout.strip().split("@")[1]
        remove(on_a, "b", pushed_name, "lab/digested:2", image_id(DIGESTED))

        by_digest = shipper("move", f"{registry}/lab/digested@{digest}", "--from", "a", "--to", "b", "-i", ssh_inventory, "--via", route)
        assert by_digest.status == 0, by_digest.stderr
        assert image_id_of(on_a, "b", image_id(DIGESTED)) == image_id(DIGESTED)  # arrived, under no tag of its own
        assert image_id_of(on_a, "b", pushed_name) is None

        with_tag = shipper("move", f"{registry}/lab/digested:1@{digest}", "--from", "a", "--to", "b", "-i", ssh_inventory, "--via", route)
        assert with_tag.status == 0, with_tag.stderr
        assert image_id_of(on_a, "b", pushed_name) == image_id(DIGESTED)
    finally:  # names of the lab's registry must not stay on the hosts: other tests check that none do
        remove(on_a, "a,b", pushed_name, image_id(DIGESTED))  # by ID: its digest reference goes too


LIMITED = SyntheticImage("lab/limited:1", (Layer(12 << 20, "limited"),))


@pytest.mark.parametrize(("route", "options", "targets", "rate"), [
    ("ssh", ["--limit-rate", "4M"], "b", 4 << 20),  # host to host: the source's program holds the rate
    ("relay", ["--limit-rate", "4M"], "b", 4 << 20),  # through this machine
    ("ssh", ["--limit-total", "8M"], "b,c", 4 << 20),  # two targets share 8M: 4M each
])  # fmt: skip
def test_a_move_is_held_to_its_rate_limit(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, route: str, options: list[str], targets: str, rate: int
) -> None:
    on_a.load_images("a", [LIMITED])
    remove(on_a, targets, LIMITED.name, image_id(LIMITED))

    result = shipper("move", LIMITED.name, "--from", "a", "--to", targets, "--via", route, *options, "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    plan = one(result.stdout, "plan")
    assert plan.get("limit_rate") or plan.get("limit_total")
    for moved in events(result.stdout, "result"):
        floor = moved["bytes_sent"] / rate
        assert floor * 0.95 <= moved["seconds"] <= floor * 1.15 + 2.0, moved  # held to the rate, and not much slower


MIXED = SyntheticImage("lab/mixed:1", (Layer(8 << 20, "mixed-text", "text"), Layer(4 << 20, "mixed-random")))


@pytest.mark.parametrize("via, compress", [("ssh", "zlib"), ("ssh", "none"), ("relay", "zlib")])
def test_a_compressed_move_arrives_identical_and_crosses_fewer_bytes(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, via: str, compress: str
) -> None:
    """Host to host, and on the relay's leg from this machine to the target."""
    on_a.load_images("a", [MIXED])
    remove(on_a, "b", MIXED.name, image_id(MIXED))

    result = shipper("move", MIXED.name, "--from", "a", "--to", "b", "--via", via, "--compress", compress, "-i", ssh_inventory, "--json")

    assert result.status == 0, result.stderr
    moved = one(result.stdout, "result")
    assert moved["route"] == ("host-to-host" if via == "ssh" else "relay") and one(result.stdout, "plan")["compress"] == compress
    assert image_id_of(on_a, "b", MIXED.name) == image_id(MIXED)
    if compress == "zlib":  # the text layer shrinks, the random one goes as it is
        assert moved["bytes_on_wire"] < moved["bytes_sent"] - (5 << 20), moved
    else:
        assert "bytes_on_wire" not in moved


def test_re_moving_an_unchanged_image_costs_each_target_few_round_trips(shipper: ShipperRunner, on_a: Lab, ssh_inventory: str) -> None:
    # On a far link every request to a target's engine waits a round trip: an unchanged target must need few.
    on_a.load_images("a", [APP])
    shipper("move", APP.name, "--from", "a", "--to", "b,c", "-i", ssh_inventory)

    again = shipper("move", APP.name, "--from", "a", "--to", "b,c", "-i", ssh_inventory, "--json")

    assert again.status == 0, again.stderr
    trips = {r["host"]: (r["status"], r["round_trips"]) for r in events(again.stdout, "result")}
    assert trips.keys() == {"b", "c"} and all(status == "unchanged" and count <= 3 for status, count in trips.values()), trips


def test_the_platform_asked_for_moves_and_another_is_refused_before_anything_crosses(
    shipper: ShipperRunner, on_a: Lab, ssh_inventory: str, tmp_path: Path
) -> None:  # fmt: skip
    """A classic store holds one platform per image: --platform is then a check, made while planning.
    (Choosing one platform of a multi-platform image needs Docker 28's containerd store: scripts/matrix.)"""
    remove(on_a, "b", BUSYBOX.name, image_id(BUSYBOX))  # by ID too: other tests tag it under other names there
    here = on_a.docker("a", "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", BUSYBOX.name).stdout.strip()
    other = "linux/arm64" if here != "linux/arm64" else "linux/amd64"

    refused = shipper("move", BUSYBOX.name, "--from", "a", "--to", "b", "--platform", other, "-i", ssh_inventory)
    bundle = tmp_path / "other.tar"
    no_bundle = shipper("bundle", "create", BUSYBOX.name, "--from", "a", "--platform", other, "-o", str(bundle), "-i", ssh_inventory)
    moved = shipper("move", BUSYBOX.name, "--from", "a", "--to", "b", "--platform", here, "-i", ssh_inventory, "--json")

    assert refused.status == 1
    assert f"{BUSYBOX.name} on a" in refused.stderr and f"is {here}, not {other}" in refused.stderr
    assert "one platform per image" in refused.stderr and "hint:" in refused.stderr
    assert no_bundle.status == 1 and not list(tmp_path.iterdir())
    assert moved.status == 0, moved.stderr
    assert one(moved.stdout, "result")["status"] == "moved"
    assert image_id_of(on_a, "b", BUSYBOX.name) == image_id(BUSYBOX)


def test_an_unknown_platform_spelling_is_a_usage_error(shipper: ShipperRunner, ssh_inventory: str) -> None:
    result = shipper("move", BUSYBOX.name, "--from", "a", "--to", "b", "--platform", "linux/amd 64", "-i", ssh_inventory)

    assert result.status == 2
    assert "os[/arch[/variant]]" in result.stderr
