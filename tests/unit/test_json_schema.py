"""Every command's --json output is one JSON-lines stream: begin (with the schema version), the
command's events, an error event when it fails, and a summary with the exit status last.

The schema is shipper/cli/schema.py (shown in docs/json.md). Every test that runs a command with
--json checks its output against it (tests/conftest.py); this file makes sure every command is
covered, failing ones included."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from shipper.cli.main import cli
from shipper.cli.output import SCHEMA
from shipper.cli.schema import COMMANDS, EVENTS, problems
from tests.conftest import ShipperRunner, events, one


def json_commands(group: click.Group = cli, prefix: str = "") -> list[str]:
    found = []
    with click.Context(group) as ctx:
        commands = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    for name, command in commands.items():
        assert command is not None, name
        path = f"{prefix}{name}"
        if isinstance(command, click.Group):
            found += json_commands(command, path + " ")
        elif any(p.name == "as_json" for p in command.params):
            found.append(path)
    return found


def test_every_command_with_json_has_its_events_in_the_schema() -> None:
    assert sorted(json_commands()) == sorted(COMMANDS)
    assert all(kind in EVENTS for kinds in COMMANDS.values() for kind in kinds)


DEAD = "127.0.0.1:9"  # nothing listens: every registry command fails at once


@pytest.fixture
def inventory(tmp_path: Path) -> str:
    path = tmp_path / "hosts"
    path.write_text(f"[web]\ndown ansible_host=127.0.0.1 ansible_port=9 ssh_connect_timeout=2\n")
    return str(path)


def failing_invocations(inventory: str, tmp: Path) -> dict[str, list[str]]:
    missing = str(tmp / "missing.tar")
    return {
        "hosts": ["hosts", "nosuchgroup", "-i", inventory],
        "ping": ["ping", "web", "-i", inventory],
        "images": ["images", "web", "-i", inventory],
        "move": ["move", "app:1", "--from", "down", "--to", "web", "-i", inventory],
        "play": ["play", str(tmp / "missing.yml"), "-i", inventory],
        "bundle create": ["bundle", "create", "app:1", "--from", "down", "-o", str(tmp / "out.tar"), "-i", inventory],
        "bundle verify": ["bundle", "verify", missing],
        "bundle load": ["bundle", "load", missing, "--to", "web", "-i", inventory],
        "bundle push": ["bundle", "push", missing, "--registry", f"http://{DEAD}"],
        "bundle have": ["bundle", "have", "web", "-o", str(tmp / "have.json"), "-i", inventory],
        "registry ls": ["registry", "ls", f"http://{DEAD}"],
        "registry tags": ["registry", "tags", f"http://{DEAD}/app"],
        "registry inspect": ["registry", "inspect", f"http://{DEAD}/app:1"],
        "registry rm": ["registry", "rm", f"http://{DEAD}/app:1"],
        "registry login": ["registry", "login", f"http://{DEAD}", "-u", "u", "--password-file", str(tmp / "missing-password")],
        "registry up": ["registry", "up", "down", "--user", "u", "--password-file", str(tmp / "missing-password"), "-i", inventory],
        "registry status": ["registry", "status", "down", "-i", inventory],
        "registry down": ["registry", "down", "down", "-i", inventory],
        "registry gc": ["registry", "gc", "down", "-u", "u", "--password-file", str(tmp / "missing-password"), "-i", inventory],
        "key generate": ["key", "generate", "-o", str(tmp / "release"), "--passphrase-file", str(tmp / "missing-passphrase")],
        "sign": ["sign", "app:1", "--from", "down", "--key", str(tmp / "missing.key"), "-i", inventory],
    }


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failing_command_still_writes_begin_error_and_summary(command: str, shipper: ShipperRunner, inventory: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = shipper(*failing_invocations(inventory, tmp_path)[command], "--json")

    assert result.status != 0, result.stdout
    assert not problems(result.stdout, result.status)
    begin, summary = events(result.stdout)[0], events(result.stdout)[-1]
    assert (begin["event"], begin["schema"], begin["command"]) == ("begin", SCHEMA, command)
    assert (summary["event"], summary["status"], summary["ok"]) == ("summary", result.status, False)


def test_an_error_event_carries_the_message_the_hint_and_the_exit_status(shipper: ShipperRunner, tmp_path: Path) -> None:
    result = shipper("bundle", "verify", str(tmp_path / "missing.tar"), "--json")

    error = one(result.stdout, "error")
    assert error["status"] == result.status and error["error"]["message"] and "missing.tar" in error["error"]["message"]


def test_a_command_that_succeeds_ends_with_an_ok_summary_and_its_counts(shipper: ShipperRunner, inventory: str) -> None:
    result = shipper("hosts", "all", "-i", inventory, "--json")

    assert result.status == 0
    assert [e["event"] for e in events(result.stdout)] == ["begin", "host", "summary"]
    assert one(result.stdout, "summary") == {"event": "summary", "command": "hosts", "status": 0, "ok": True, "hosts": 1}


def test_the_checker_finds_what_breaks_the_schema() -> None:
    assert problems('{"event": "host"}\n', 0)[0].startswith("the first event is 'host'")
    assert any("lacks 'status'" in p for p in problems('{"event": "begin", "schema": 1, "command": "ping", "version": "x"}\n{"event": "summary", "command": "ping", "ok": true}\n', 0))
    assert any("may not write" in p for p in problems('{"event": "begin", "schema": 1, "command": "ping", "version": "x"}\n{"event": "image", "name": "a", "id": "b", "size": 1, "hosts": []}\n{"event": "summary", "command": "ping", "status": 0, "ok": true}\n', 0))
