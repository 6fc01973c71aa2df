"""What a playbook's templates see of the inventory: Ansible's names, and inventory values that are
templates themselves rendered on use, with !unsafe values left as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipper.errors import Origin
from shipper.inventory import load_inventory
from shipper.playbook.inventory_vars import resolve
from shipper.playbook.model import PlaybookError
from shipper.playbook.render import render
from shipper.playbook.run import Play
from shipper.yamlfile import Unsafe

HERE = Origin("test", None)


def use(template: str, context: dict[str, Any]) -> Any:
    return render(template, context, HERE, "step")


def test_an_inventory_value_that_is_a_template_is_rendered_when_used() -> None:
    values = {"app_dir": "/srv/{{ inventory_hostname }}", "log_dir": "{{ app_dir }}/log"}

    resolved = resolve(values, {"inventory_hostname": "web1"}, HERE)

    assert resolved == {"app_dir": "/srv/web1", "log_dir": "/srv/web1/log"}


def test_text_from_an_unsafe_value_is_never_rendered_again() -> None:
    values = {"motd": Unsafe("{{ secret }}"), "greeting": "Hi {{ motd }}"}

    resolved = resolve(values, {"secret": "leaked"}, HERE)

    assert resolved["greeting"] == "Hi {{ secret }}" and resolved["motd"] == "{{ secret }}"


def test_a_value_that_cannot_render_fails_only_the_step_that_uses_it_and_names_it() -> None:
    resolved = resolve({"a": "{{ b }}", "b": "{{ a }}", "broken": "{{ nowhere }}", "fine": "x"}, {}, HERE)

    assert use("{{ fine }}", resolved) == "x"
    with pytest.raises(PlaybookError, match="inventory variable 'broken' cannot be rendered"):
        use("{{ broken }}", resolved)
    with pytest.raises(PlaybookError, match="refers to itself"):
        use("{{ a }}", resolved)


def test_templates_see_inventory_hostname_group_names_groups_and_hostvars(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("[web]\nw1 color=red\nw2\n[db]\nd1\n[web:vars]\nurl=http://{{ inventory_hostname }}:8080\n")
    inventory = load_inventory(path)
    play = Play(None, inventory, {"release": "v2"}, None, False)  # type: ignore[arg-type]

    context = play.context(inventory.host("w1"))

    assert use("{{ inventory_hostname }} {{ group_names | join(',') }} {{ groups['web'] | join(',') }}", context) == "w1 web w1,w2"
    assert use("{{ hostvars['w1'].color }} {{ url }} {{ release }}", context) == "red http://w1:8080 v2"
