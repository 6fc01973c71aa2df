"""``shipper play``: the example playbooks run end to end on the lab, proven on the far side;
their second run changes nothing; ``--check`` changes nothing on any engine; bad playbooks
are refused, naming file, line and step, before anything runs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image, image_id, registry_image
from shipper.provision import state_dir
from tests.conftest import ShipperRunner
from tests.integration.helpers import image_id_of, remove

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
RELEASE_1 = SyntheticImage("lab/play:1", (Layer(1 << 20, "play-base"),), cmd=("sh",), files=busybox_image().files)
RELEASE_2 = SyntheticImage("lab/play:2", (Layer(1 << 20, "play-base"), Layer(64 << 10, "play-2")), cmd=("sh",), files=busybox_image().files)


def play(shipper: ShipperRunner, lab: Lab, playbook: str, *args: str) -> tuple[int, list[dict]]:
    result = shipper("play", str(PLAYBOOKS / playbook), "--json", "-i", str(lab.inventory_path), *args)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.status in (0, 4), result.stderr
    return result.status, events


def statuses(events: list[dict]) -> dict[tuple[str, str], str]:
    return {(e["step"], e["host"]): e["status"] for e in events if e["event"] == "result"}


def container_image(lab: Lab, host: str, name: str = "app") -> str | None:
    result = lab.docker(host, "inspect", "-f", "{{.Image}} {{.State.Running}}", name, check=False)
    if result.returncode != 0:
        return None
    image, running = result.stdout.split()
    return image if running == "true" else None


def containers_now(lab: Lab, hosts: str) -> dict[str, str]:
    return {h: lab.docker(h, "ps", "-aq", "--no-trunc").stdout for h in hosts.split(",")}


@pytest.fixture
def fresh(lab: Lab) -> Iterator[Lab]:
    lab.load_images("a", [RELEASE_1, RELEASE_2])
    for host in ("b", "c"):
        lab.docker(host, "rm", "-f", "app", check=False)
    remove(lab, "b,c", RELEASE_1.name, RELEASE_2.name, image_id(RELEASE_1), image_id(RELEASE_2))
    yield lab
    for host in ("b", "c"):
        lab.docker(host, "rm", "-f", "app", check=False)


def test_the_release_playbook_ships_and_starts_the_release_and_a_second_run_changes_nothing(shipper: ShipperRunner, fresh: Lab) -> None:
    _, check = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_1.name}", "--check")
    assert set(statuses(check).values()) == {"changed"}
    assert image_id_of(fresh, "b", RELEASE_1.name) is None and container_image(fresh, "b") is None

    status, first = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_1.name}")
    _, second = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_1.name}")

    assert status == 0 and set(statuses(first).values()) == {"changed"}
    assert set(statuses(second).values()) == {"unchanged"}
    for host in ("b", "c"):
        assert container_image(fresh, host) == image_id(RELEASE_1)
        assert fresh.docker(host, "logs", "app").stdout.startswith(f"serving {RELEASE_1.name} on {host}, ")


def test_check_on_a_new_release_changes_nothing_then_the_run_replaces_the_containers(shipper: ShipperRunner, fresh: Lab) -> None:
    play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_1.name}")
    before = containers_now(fresh, "b,c")

    _, check = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_2.name}", "--check")

    assert statuses(check)[("ship the release", "b")] == "changed"
    assert containers_now(fresh, "b,c") == before and image_id_of(fresh, "b", RELEASE_2.name) is None
    _, run = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_2.name}")
    assert set(statuses(run).values()) == {"changed"}
    assert container_image(fresh, "c") == image_id(RELEASE_2)


def test_a_failing_host_stops_there_while_the_others_go_on(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    playbook = tmp_path / "partial.yml"
    playbook.write_text(
        "steps:\n"
        "  - name: start\n    hosts: b,c\n    container: {name: app, image: lab/play:1, command: [sleep, '100000'], network: none}\n"
        "  - name: tidy\n    hosts: b,c\n    remove: {images: [lab/nothing:1]}\n"
    )
    fresh.load_images("b", [RELEASE_1])  # c lacks the image

    result = shipper("play", str(playbook), "--json", "-i", str(fresh.inventory_path))

    assert result.status == 4
    found = statuses([json.loads(line) for line in result.stdout.splitlines()])
    assert found == {("start", "b"): "changed", ("start", "c"): "failed", ("tidy", "b"): "unchanged", ("tidy", "c"): "skipped"}


def test_the_airgap_playbook_loads_a_bundle_and_runs_the_release(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    bundle = tmp_path / "site.tar.zst"
    assert shipper("bundle", "create", RELEASE_2.name, "--from", "a", "-o", str(bundle), "-i", str(fresh.inventory_path)).status == 0

    _, check = play(shipper, fresh, "airgap.yml", "-e", f"bundle={bundle}", "-e", f"release={RELEASE_2.name}", "--check")
    assert set(statuses(check).values()) == {"changed"}
    assert image_id_of(fresh, "b", image_id(RELEASE_2)) is None and container_image(fresh, "c") is None  # --check touched nothing

    status, first = play(shipper, fresh, "airgap.yml", "-e", f"bundle={bundle}", "-e", f"release={RELEASE_2.name}")
    _, second = play(shipper, fresh, "airgap.yml", "-e", f"bundle={bundle}", "-e", f"release={RELEASE_2.name}")

    assert status == 0 and set(statuses(first).values()) == {"changed"}
    assert set(statuses(second).values()) == {"unchanged"}
    assert container_image(fresh, "b") == image_id(RELEASE_2) and container_image(fresh, "c") == image_id(RELEASE_2)


ADDRESS = "10.213.9.1"


@pytest.fixture
def registry_lab(lab: Lab, tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], capture_output=True)
    lab.load_images("a", [registry_image("shipper-lab/registry:2", "2")])
    password = tmp_path / "password"
    password.write_text("play-Pa55\n")
    yield lab, password
    ShipperRunner()("registry", "down", "a", "--port", "5460", "--purge", "-i", str(lab.inventory_path))
    shutil.rmtree(f"/etc/docker/certs.d/{ADDRESS}:5460", ignore_errors=True)


def test_the_registry_playbook_bootstraps_trusts_and_logs_in_and_a_second_run_changes_nothing(
    shipper: ShipperRunner, registry_lab: tuple[Lab, Path]
) -> None:
    lab, password = registry_lab
    args = ("-e", f"address={ADDRESS}", "-e", "port=5460", "-e", "image=shipper-lab/registry:2", "-e", f"password_file={password}")

    _, check = play(shipper, lab, "registry.yml", *args, "--check")
    assert statuses(check)[("run the registry", "a")] == "changed"
    assert not Path(state_dir(5460)).exists()  # --check wrote nothing, and started nothing:
    assert lab.docker("a", "ps", "-aq", "--filter", "name=shipper-registry-5460").stdout == ""

    status, first = play(shipper, lab, "registry.yml", *args)
    _, second = play(shipper, lab, "registry.yml", *args)

    assert status == 0 and set(statuses(first).values()) == {"changed"}
    assert set(statuses(second).values()) == {"unchanged"}
    config = json.loads((lab.root / "c" / "sshd" / "docker-config" / "config.json").read_text())
    assert f"{ADDRESS}:5460" in config["auths"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps:\n  - name: x\n    deploy: {a: 1}\n", "line 3, step 'x': unknown step kind or key 'deploy'"),
        ("steps:\n  - name: x\n    hosts: b\n    container: {name: app, image: i, colour: red}\n", "step 'x': unknown field 'colour' for container"),
        ("steps:\n  - name: x\n    hosts: b\n    container: {name: app}\n", "step 'x': container needs image:"),
        ("steps:\n  - name: x\n    hosts: b\n    container: {name: app, image: '{{ nope }}'}\n", "step 'x': 'nope' is undefined"),
        ("steps:\n  - container: {name: app, image: i}\n", "step 1 needs a name:"),
    ],
)
def test_a_bad_playbook_is_refused_with_file_line_and_step_before_anything_runs(
    shipper: ShipperRunner, lab: Lab, tmp_path: Path, text: str, expected: str
) -> None:
    playbook = tmp_path / "bad.yml"
    playbook.write_text(text)

    result = shipper("play", str(playbook), "-i", str(lab.inventory_path))

    assert result.status != 0
    assert str(playbook) in result.stderr and expected in result.stderr, result.stderr


def test_a_container_that_crashes_at_once_is_a_failure_not_a_change(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    playbook = tmp_path / "crash.yml"
    playbook.write_text(
        "steps:\n  - name: start\n    hosts: b\n"
        "    container: {name: app, image: lab/play:1, command: [sh, -c, 'exit 3'], network: none, restart: always}\n"
    )
    fresh.load_images("b", [RELEASE_1])

    result = shipper("play", str(playbook), "-i", str(fresh.inventory_path))

    assert result.status == 4
    assert "container app on b" in result.stderr and ("does not stay up" in result.stderr or "exited with status 3" in result.stderr)


def test_limit_plays_only_on_those_hosts_and_fail_fast_stops_the_play(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    _, limited = play(shipper, fresh, "release.yml", "-e", f"release={RELEASE_1.name}", "--limit", "b")
    assert {host for _, host in statuses(limited)} == {"b"}
    assert container_image(fresh, "b") == image_id(RELEASE_1) and container_image(fresh, "c") is None

    playbook = tmp_path / "fast.yml"
    playbook.write_text(
        "steps:\n  - name: start\n    hosts: c\n    container: {name: app, image: lab/missing:1}\n"
        "  - name: tidy\n    hosts: b\n    remove: {containers: [app]}\n"
    )
    result = shipper("play", str(playbook), "--fail-fast", "--json", "-i", str(fresh.inventory_path))
    assert result.status == 4
    assert statuses([json.loads(line) for line in result.stdout.splitlines()]) == {("start", "c"): "failed"}
    assert container_image(fresh, "b") == image_id(RELEASE_1)  # the tidy step never ran


def test_a_move_step_through_a_registry_keeps_the_registrys_insecure_setting(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    """The playbook turns a registry's name into a route the way the command line does (it used to drop
    ``insecure``, so a plain-HTTP registry off loopback was refused there and accepted on the command line)."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        fresh.inventory_path.read_text() + "\nregistries:\n  far:\n    address: http://registry.invalid:5000\n    insecure: true\n"
    )
    playbook = tmp_path / "far.yml"
    playbook.write_text(f"steps:\n  - name: ship\n    move:\n      images: [{RELEASE_1.name}]\n      from: a\n      to: b\n      registry: far\n")

    by_play = shipper("play", str(playbook), "-i", str(inventory), "--check")
    by_cli = shipper("move", RELEASE_1.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "far", "-i", str(inventory), "--dry-run")

    for result in (by_play, by_cli):
        assert result.status != 0
        assert "refusing plain HTTP" not in result.stderr + result.stdout
        assert "cannot reach registry registry.invalid:5000" in result.stderr + result.stdout, result.stderr + result.stdout


def test_loop_and_when_run_a_step_per_item_on_the_hosts_where_it_holds(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    playbook = tmp_path / "loop.yml"
    playbook.write_text(
        f"vars:\n  releases: [{RELEASE_1.name}, {RELEASE_2.name}]\n"
        "steps:\n"
        "  - name: ship {{ item }}\n    loop: '{{ releases }}'\n    move: {images: ['{{ item }}'], from: a, to: 'b,c'}\n"
        "  - name: start {{ item }}\n    hosts: b,c\n    loop: '{{ releases[-1:] }}'\n    when: inventory_hostname == 'b'\n"
        "    container: {name: app, image: '{{ item }}', command: [sh, -c, 'exec sleep 2147483647'], network: none}\n"
    )

    result = shipper("play", str(playbook), "--json", "-i", str(fresh.inventory_path))

    assert result.status == 0, result.stderr
    seen = statuses([json.loads(line) for line in result.stdout.splitlines()])
    assert seen[(f"ship {RELEASE_1.name}", "c")] == "changed" and seen[(f"ship {RELEASE_2.name}", "b")] == "changed"
    assert seen[(f"start {RELEASE_2.name}", "b")] == "changed" and seen[(f"start {RELEASE_2.name}", "c")] == "skipped"
    assert container_image(fresh, "b") == image_id(RELEASE_2) and container_image(fresh, "c") is None


def test_a_container_step_declares_a_health_check_and_waits_until_healthy(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    shipper("move", RELEASE_1.name, "--from", "a", "--to", "b", "-i", str(fresh.inventory_path))
    playbook = tmp_path / "health.yml"
    playbook.write_text(
        "steps:\n  - name: start\n    hosts: b\n    container:\n"
        f"      name: app\n      image: {RELEASE_1.name}\n      network: none\n"
        "      command: [sh, -c, 'sleep 1; touch /ready; exec sleep 2147483647']\n"
        "      healthcheck: {test: 'test -e /ready', interval: 500ms, retries: 20}\n"
    )

    result = shipper("play", str(playbook), "-i", str(fresh.inventory_path))

    assert result.status == 0, result.stderr
    health = fresh.docker("b", "inspect", "-f", "{{.State.Health.Status}} {{json .Config.Healthcheck.Test}}", "app").stdout.strip()
    assert health == 'healthy ["CMD-SHELL","test -e /ready"]'


def test_a_move_step_takes_a_platform_and_refuses_an_image_of_another(shipper: ShipperRunner, fresh: Lab, tmp_path: Path) -> None:
    here = fresh.docker("a", "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", RELEASE_1.name).stdout.strip()
    other = "linux/arm64" if here != "linux/arm64" else "linux/amd64"
    playbook = tmp_path / "platform.yml"
    playbook.write_text(
        "steps:\n"
        f"  - name: ship {{{{ item }}}}\n    hosts: b\n    loop: ['{here}', '{other}']\n"
        f"    move: {{images: ['{RELEASE_1.name}'], from: a, platform: '{{{{ item }}}}'}}\n"
    )

    result = shipper("play", str(playbook), "--json", "-i", str(fresh.inventory_path))

    assert result.status == 4
    assert statuses([json.loads(line) for line in result.stdout.splitlines()]) == {(f"ship {here}", "b"): "changed", (f"ship {other}", "a"): "failed"}
    assert image_id_of(fresh, "b", RELEASE_1.name) == image_id(RELEASE_1)


def test_a_registry_step_can_make_a_site_cache_and_check_says_so_without_its_upstream_password(
    shipper: ShipperRunner, registry_lab: tuple[Lab, Path], tmp_path: Path
) -> None:  # fmt: skip
    lab, password = registry_lab
    user, upstream_password = lab.registry_credentials()
    (tmp_path / "upstream-password").write_text(upstream_password)
    playbook = tmp_path / "cache.yml"
    playbook.write_text(yaml.safe_dump({"steps": [{"name": "a site cache", "registry": {
        "host": "a", "user": "site", "password_file": str(password), "port": 5460, "address": ADDRESS, "image": "shipper-lab/registry:2",
        "mirror_of": lab.token_registry.host_port, "upstream_username": user, "upstream_password_file": str(tmp_path / "upstream-password"),
        "upstream_ca": str(lab.tls_file("ca.crt")),
    }}]}))  # fmt: skip

    result = shipper("play", str(playbook), "--check", "--json", "-i", str(lab.inventory_path))

    assert result.status == 0, result.stderr
    [step] = [json.loads(line) for line in result.stdout.splitlines() if '"event": "result"' in line]
    assert step["status"] == "changed" and f"a cache of https://{lab.token_registry.host_port}" in step["detail"]
    assert upstream_password not in result.stdout + result.stderr
    assert not Path(state_dir(5460)).exists()  # --check wrote nothing
