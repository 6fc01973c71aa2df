"""Options every command shares, and how a command ends with a status."""

from __future__ import annotations

import configparser
import os
import re
import stat
from pathlib import Path
from typing import Any
from collections.abc import Callable

import click

from shipper.cli.output import Env
from shipper.errors import UsageError
from shipper.hostpool import MAX_PARALLEL_HOSTS, set_forks

DEFAULT_INVENTORY = "inventory/hosts.yml"
ANSIBLE_CONFIGS = ("./ansible.cfg", "~/.ansible.cfg", "/etc/ansible/ansible.cfg")  # after $ANSIBLE_CONFIG, in Ansible's order


class ExitRequest(Exception):
    """A command finished with a non-zero status it has already explained."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def default_inventory() -> str:
    """The inventory when no -i is given: $SHIPPER_INVENTORY, $ANSIBLE_INVENTORY, ansible.cfg's, inventory/hosts.yml."""
    for name in ("SHIPPER_INVENTORY", "ANSIBLE_INVENTORY"):
        if os.environ.get(name):
            return os.environ[name]
    return ansible_cfg_inventory() or DEFAULT_INVENTORY


def ansible_cfg_inventory() -> str | None:
    """``[defaults] inventory`` of the ansible.cfg Ansible would read, its paths made absolute."""
    candidates = [os.environ["ANSIBLE_CONFIG"]] if os.environ.get("ANSIBLE_CONFIG") else []
    if not os.stat(".").st_mode & stat.S_IWOTH:  # Ansible ignores ./ansible.cfg in a world-writable directory
        candidates.append(ANSIBLE_CONFIGS[0])
    candidates += [os.path.expanduser(c) for c in ANSIBLE_CONFIGS[1:]]
    for candidate in candidates:
        path = Path(candidate)
        if path.is_dir():
            path = path / "ansible.cfg"
        if not path.is_file():
            continue
        parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            return None  # Ansible would fail on it too; shipper's own default then says what is missing
        value = parser.get("defaults", "inventory", fallback=None)
        if not value:
            return None  # the first ansible.cfg found is the only one Ansible reads
        base = path.resolve().parent
        return ",".join(str(base / os.path.expanduser(p.strip())) for p in value.split(",") if p.strip())
    return None


def _inventory_sources(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> str:
    """One -i, several (Ansible's ``-i a -i b``: every source read into one inventory), or the default."""
    if not values:
        return default_inventory()
    if len(values) == 1:
        return values[0]
    for value in values:
        if not Path(value).expanduser().exists():
            raise click.BadParameter(f"{value} does not exist (with several -i, each must be a file or a directory)", ctx, param)
    return ",".join(values)


def _forks(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is None:
        from_env = os.environ.get("ANSIBLE_FORKS", "")
        value = int(from_env) if from_env.isdigit() and int(from_env) > 0 else MAX_PARALLEL_HOSTS
    set_forks(value)


def inventory_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-i``, and ``--forks`` with it: every command that reads the inventory works on hosts at once."""
    func = click.option(
        "--forks", type=click.IntRange(1, 500), default=None, expose_value=False, callback=_forks, is_eager=True, metavar="N",
        help=f"At most N hosts at once, as Ansible's --forks (default: $ANSIBLE_FORKS, else {MAX_PARALLEL_HOSTS}).",
    )(func)  # fmt: skip
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        metavar="SOURCE",
        multiple=True,
        callback=_inventory_sources,
        show_default="$SHIPPER_INVENTORY, $ANSIBLE_INVENTORY, ansible.cfg's inventory, or inventory/hosts.yml",
        help="The inventory: a YAML or INI file, a directory, an inventory script, ansible-inventory --list JSON, or 'host1,host2,'. Repeat to read several.",
    )(func)


def _json_mode(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value and not ctx.resilient_parsing:  # not while the shell completes a word
        env_of(ctx).begin(ctx.command_path.partition(" ")[2] or ctx.command_path)
    return value


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, callback=_json_mode, is_eager=True,
        help="Write JSON lines to stdout (begin, the command's events, summary; see docs/json.md) instead of a table.",
    )(func)  # fmt: skip


_RATE = re.compile(r"(\d+(?:\.\d+)?)([KMGkmg]?)(?:i?B)?(?:/s)?")


def parse_rate(text: str, option: str) -> float:
    """``20M``, ``500K``, ``1.5G`` (bytes a second; binary units, as curl's --limit-rate reads them)."""
    match = _RATE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"{option} {text!r} is not a rate", hint="write it like 20M, 500K or 1G (bytes a second)")
    rate = float(match.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[match.group(2).upper()]
    if rate < 1024:
        raise UsageError(f"{option} must be at least 1K (a second)")
    return rate


def env_of(ctx: click.Context) -> Env:
    return ctx.ensure_object(Env)


def finish(status: int) -> None:
    """End the command with ``status`` (its reasons were already printed)."""
    if status:
        raise ExitRequest(status)
