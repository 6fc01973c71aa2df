"""Options every command shares, and how a command ends with a status."""

from __future__ import annotations

import os
from typing import Any
from collections.abc import Callable

import click

from shipper.cli.output import Env

DEFAULT_INVENTORY = "inventory/hosts.yml"


class ExitRequest(Exception):
    """A command finished with a non-zero status it has already explained."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def inventory_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-i",
        "--inventory",
        "inventory_path",
        metavar="FILE",
        default=lambda: os.environ.get("SHIPPER_INVENTORY") or DEFAULT_INVENTORY,
        show_default="$SHIPPER_INVENTORY or inventory/hosts.yml",
        help="The inventory file.",
    )(func)


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Write JSON to stdout instead of a table.")(func)


def env_of(ctx: click.Context) -> Env:
    return ctx.ensure_object(Env)


def finish(status: int) -> None:
    """End the command with ``status`` (its reasons were already printed)."""
    if status:
        raise ExitRequest(status)
