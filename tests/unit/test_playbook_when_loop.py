"""Playbooks read like Ansible's where it costs little: when: and loop: on any step, step names rendered."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipper.inventory import load_inventory
from shipper.playbook.model import PlaybookError, load_playbook
from shipper.playbook.run import Play, _unrolled


def playbook(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def play(tmp_path: Path) -> Play:
    (tmp_path / "hosts").write_text("[web]\nw1 tier=front\nw2 tier=back\n[db]\nd1\n")
    book = load_playbook(playbook(tmp_path, """\
        vars: {releases: [app:1, app:2]}
        steps:
          - name: run {{ item }}
            hosts: web
            loop: "{{ releases }}"
            when: tier == 'front' and item != 'app:2'
            container: {name: app, image: "{{ item }}"}
        """))  # fmt: skip
    return Play(book, load_inventory(tmp_path / "hosts"), {"releases": ["app:1", "app:2"]}, None, False)


def test_a_loop_runs_the_step_once_per_item_with_its_name_rendered(play: Play) -> None:
    steps = _unrolled(play, play.playbook.steps[0])

    assert [s.name for s in steps] == ["run app:1", "run app:2"]
    assert [play.fields(s)["image"] for s in steps] == ["app:1", "app:2"]


def test_when_keeps_the_hosts_where_it_holds_and_skips_the_others_saying_so(play: Play) -> None:
    first, second = _unrolled(play, play.playbook.steps[0])
    web = [play.inventory.host("w1"), play.inventory.host("w2")]

    kept, skipped = play.gate(first, web)
    assert [h.name for h in kept] == ["w1"] and [(r.host, r.status, r.detail) for r in skipped] == [("w2", "skipped", "when: not true here")]
    assert play.gate(second, web)[0] == []


def test_when_with_braces_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(PlaybookError, match="when: is an expression already"):
        load_playbook(playbook(tmp_path, "steps:\n  - name: x\n    hosts: web\n    when: '{{ go }}'\n    remove: {containers: [a]}\n"))


def test_a_loop_over_something_that_is_not_a_list_is_an_error_naming_the_step(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("w1\n")
    book = load_playbook(playbook(tmp_path, "steps:\n  - name: x\n    hosts: all\n    loop: '{{ one }}'\n    remove: {containers: ['{{ item }}']}\n"))
    play = Play(book, load_inventory(tmp_path / "hosts"), {"one": "scalar"}, None, False)

    with pytest.raises(PlaybookError, match="loop: must give a list"):
        _unrolled(play, book.steps[0])


def test_a_health_check_takes_composes_keys_and_durations() -> None:
    from shipper.errors import UsageError
    from shipper.ops.containers import healthcheck

    check = dict(healthcheck({"test": "curl -f localhost", "interval": "2s", "timeout": "500ms", "start_period": "1m30s", "retries": 3}))
    assert check == {"test": ("CMD-SHELL", "curl -f localhost"), "interval": 2 * 10**9, "timeout": 5 * 10**8, "start_period": 90 * 10**9, "retries": 3}
    assert dict(healthcheck({"test": ["pg_isready", "-q"]}))["test"] == ("CMD", "pg_isready", "-q")
    with pytest.raises(UsageError, match="is not a duration"):
        healthcheck({"test": "true", "interval": "soon"})
