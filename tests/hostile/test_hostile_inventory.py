"""Hostile inventories: a host name never reaches a shell through the user's ssh_config, and every
malformed engine address or image name is a one-line error, not a traceback."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from shipper import imageref
from shipper.errors import InventoryError, UsageError
from shipper.inventory import load_inventory, read_script
from shipper.registry.names import check_repository, check_tag, parse_repo_ref
from tests.conftest import ShipperRunner


@pytest.fixture
def match_exec_config(clean_environment: Path, tmp_path: Path) -> Path:
    """The user's own ~/.ssh/config with a ``Match exec`` that runs a command holding the host name."""
    marker = tmp_path / "ran"
    ssh = clean_environment / ".ssh"
    ssh.mkdir(exist_ok=True)
    (ssh / "config").write_text(f'Match exec "echo %h >> {marker}"\n  Port 2222\n')
    return marker


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", ["x$(touch${IFS}/tmp/shipper-pwned)", "x`id`", "a;b", "-oProxyCommand=x", "a b", "web1\\n"])
def test_a_host_name_with_shell_characters_never_reaches_match_exec(
    shipper: ShipperRunner, tmp_path: Path, match_exec_config: Path, name: str
) -> None:
    inventory = write(tmp_path, f"all:\n  hosts:\n    ok1:\n    '{name}':\n")

    result = shipper("hosts", "-i", inventory)

    assert result.status != 0, result.stderr
    assert re.search("is not a (valid )?host name", result.stderr) and "line 4" in result.stderr
    assert not match_exec_config.exists()
    assert not Path("/tmp/shipper-pwned").exists()


def test_an_ansible_host_with_shell_characters_is_refused_too(shipper: ShipperRunner, tmp_path: Path, match_exec_config: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    web1: {ansible_host: '$(id)'}\n")

    result = shipper("hosts", "-i", inventory)

    assert result.status != 0
    assert "the SSH address of host web1" in result.stderr and "line 3" in result.stderr
    assert not match_exec_config.exists()


def test_an_ordinary_host_name_still_meets_the_users_match_exec(shipper: ShipperRunner, tmp_path: Path, match_exec_config: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    web-01.example.com:\n    v6: {ansible_host: 'fe80::1%eth0'}\n")

    result = shipper("hosts", "-i", inventory, "--json")

    assert result.status == 0, result.stderr
    assert set(match_exec_config.read_text().split()) == {"web-01.example.com", "fe80::1%eth0"}


def test_a_user_name_with_shell_characters_is_refused(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    web1: {ansible_user: 'root;id'}\n")

    result = shipper("hosts", "-i", inventory)

    assert result.status != 0
    assert "is not a user name" in result.stderr


# -- engine addresses ----------------------------------------------------------------------------


def test_an_ipv6_tcp_engine_keeps_its_brackets(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    v6: {docker_host: 'tcp://[::1]:2376'}\n")

    result = shipper("ping", "v6", "-i", inventory)

    assert "tcp://[::1]:2376" in result.stderr
    assert "Traceback" not in result.stderr and result.status == 3, result.stderr


@pytest.mark.parametrize(
    "url", ["unix:///run/docker.sock?x=1", "unix:///run/docker.sock#x", "tcp://h:2376/path", "tcp://[::1:2376", "tcp://u@h:2376", "unix:///a b"]
)
def test_a_malformed_engine_address_is_an_inventory_error(shipper: ShipperRunner, tmp_path: Path, url: str) -> None:
    inventory = write(tmp_path, f"all:\n  hosts:\n    h: {{docker_host: '{url}'}}\n")

    result = shipper("ping", "h", "-i", inventory)

    assert result.status != 0, result.stderr
    assert "docker_host" in result.stderr and "Traceback" not in result.stderr


# -- image references ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["app\n:1", "app:1\nx", "äpp:1", "app:１", "app:tag\u00e9", "app:" + "a" * 129])
def test_image_references_outside_dockers_grammar_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        imageref.parse(text)


@pytest.mark.parametrize("tag", ["1\n", "ä", "１", "a" * 129, ".x", "-x"])
def test_registry_tags_outside_the_grammar_are_refused(tag: str) -> None:
    with pytest.raises(UsageError):
        check_tag(tag)


@pytest.mark.parametrize("text", ["reg:5000/app\n", "reg:5000/äpp:1", "reg:5000\n/app:1"])
def test_registry_references_outside_the_grammar_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_repo_ref(text)


def test_a_repository_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(UsageError):
        check_repository("team/app\n")


def test_an_ssh_engine_address_that_is_not_a_url_is_an_inventory_error(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path, "all:\n  hosts:\n    h: {docker_host: 'ssh://[::1'}\n")

    result = shipper("hosts", "-i", inventory)

    assert result.status != 0 and "is not a URL" in result.stderr and "Traceback" not in result.stderr


# -- playbook templates ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ range(10**9) | list }}", "fails to render"),
        ("{{ 'a' * 10**9 }}", "repeating a value"),
        ("{{ 10 ** 1000000 }}", "too large a number"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxxxx{% endfor %}{% endfor %}", "over 1048576 characters"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took over"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ ''.__class__.__mro__ }}", "template error"),
    ],
)
def test_a_hostile_playbook_template_is_a_clear_error_in_bounded_time(template: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipper.errors import Origin
    from shipper.playbook import render as render_module
    from shipper.playbook.model import PlaybookError

    monkeypatch.setattr(render_module, "RENDER_SECONDS", 1.0)

    with pytest.raises(PlaybookError, match=expected):
        render_module.render(template, {}, Origin("play.yml", 3), "ship")


def test_an_ordinary_template_still_renders() -> None:
    from shipper.errors import Origin
    from shipper.playbook.render import render

    assert render("app:{{ version }}-{{ 2 ** 3 }}{{ '-' * 3 }}", {"version": "1.4"}, Origin("play.yml", 3), "ship") == "app:1.4-8---"


# -- dynamic inventories: a script is run bounded, and only when nobody else could have changed it --


def script(tmp_path: Path, body: str, mode: int = 0o755) -> Path:
    path = tmp_path / "inventory.py"
    path.write_text("#!/usr/bin/env python3\nimport sys, json, time\n" + body)
    path.chmod(mode)
    return path


def test_an_inventory_script_others_may_write_is_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = script(tmp_path, f"open({str(marker)!r}, 'w').write('x')\nprint('{{}}')\n", mode=0o777)

    with pytest.raises(InventoryError, match="may be changed by other users"):
        load_inventory(path)
    assert not marker.exists()


def test_an_inventory_script_that_hangs_is_stopped_on_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_script, "SCRIPT_TIMEOUT", 1.0)
    path = script(tmp_path, "time.sleep(30)\n")

    started = time.monotonic()
    with pytest.raises(InventoryError, match="gave no answer in 1 s"):
        load_inventory(path)
    assert time.monotonic() - started < 10


def test_an_inventory_script_that_prints_without_end_is_cut_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_script, "MAX_OUTPUT", 1 << 20)
    path = script(tmp_path, "while True:\n    sys.stdout.write('x' * 65536)\n")

    with pytest.raises(InventoryError, match="printed more than 1 MiB"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("sys.stderr.write('cloud API says no')\nsys.exit(3)\n", "failed with exit code 3: cloud API says no"),
        ("print('not json')\n", "printed something that is not JSON"),
        ("print(json.dumps({'web': {'hosts': 'w1'}}))\n", "'web.hosts' must be a list"),
        ("print(json.dumps({'_meta': [], 'web': ['w1']}))\n", "'_meta' must be an object"),
    ],
)
def test_a_broken_inventory_script_is_a_one_line_error(tmp_path: Path, body: str, words: str) -> None:
    with pytest.raises(InventoryError, match=re.escape(words)):
        load_inventory(script(tmp_path, body))


def test_a_host_range_that_would_fill_memory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="more than 100000"):
        load_inventory(write(tmp_path, "all:\n  hosts:\n    web[0:999999999]:\n"))


@pytest.mark.parametrize("name", ["web:&x", "bad name", "a,b", "!neg"])
def test_a_group_name_that_host_patterns_cannot_say_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InventoryError, match="is not a valid group name"):
        load_inventory(write(tmp_path, f"'{name}':\n  hosts:\n    a:\n"))


def test_a_group_vars_directory_that_links_back_to_itself_is_read_once(tmp_path: Path) -> None:
    inventory = write(tmp_path, "web:\n  hosts:\n    w1:\n")
    (tmp_path / "group_vars" / "web").mkdir(parents=True)
    (tmp_path / "group_vars" / "web" / "main.yml").write_text("a: 1\n")
    (tmp_path / "group_vars" / "web" / "loop").symlink_to(tmp_path / "group_vars" / "web")

    assert load_inventory(inventory).host("w1").vars == {"a": 1}
