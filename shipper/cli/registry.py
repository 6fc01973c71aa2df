"""``shipper registry``: list, tags, inspect, rm, login."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Any, Callable

import click

from shipper.cli.options import env_of, json_option
from shipper.cli.output import human_size, short_id, table
from shipper.errors import UsageError
from shipper.inventory import load_inventory
from shipper.inventory.model import Inventory
from shipper.ops import registry as ops
from shipper.registry.credentials import Credentials, from_password_file


def _inventory(path: str | None) -> Inventory | None:
    """The inventory when one is given or the default exists: registries may be named there."""
    path = path or os.environ.get("SHIPPER_INVENTORY") or "inventory/hosts.yml"
    return load_inventory(path) if Path(path).is_file() else None


def access_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How to reach and log in to the registry; never a password on the command line."""
    for option in reversed(
        [
            click.option("-i", "--inventory", "inventory_path", metavar="FILE", default=None, help="Inventory naming registries (registries:)."),
            click.option("--username", metavar="NAME", help="Log in as NAME (with --password-file)."),
            click.option("--password-file", metavar="FILE", help="Read the password from FILE's first line ('-': stdin)."),
            click.option("--ca", metavar="FILE", help="The registry's CA (default: /etc/docker/certs.d/HOST:PORT/ca.crt, then the system's)."),
            click.option("--insecure", is_flag=True, help="Do not verify TLS; allow plain HTTP to a non-loopback address."),
        ]
    ):
        func = option(func)
    return func


def _access(username: str | None, password_file: str | None, ca: str | None, insecure: bool) -> ops.Access:
    return ops.Access(username, password_file, ca, insecure)


@click.group()
def registry() -> None:
    """Look after a private registry (Registry HTTP API V2)."""


@registry.command("ls")
@access_options
@json_option
@click.argument("name", metavar="REGISTRY")
@click.pass_context
def ls(ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool, as_json: bool, name: str) -> None:
    """List REGISTRY's repositories (REGISTRY: host:port, or a name from the inventory)."""
    env = env_of(ctx)
    address, spec = ops.resolve(name, _inventory(inventory_path))
    with ops.open_client(address, spec, _access(username, password_file, ca, insecure)) as client:
        repositories = sorted(client.catalog())
    if as_json:
        env.json({"registry": str(address), "repositories": repositories})
    else:
        for repository in repositories:
            env.out(repository)


@registry.command("tags")
@access_options
@json_option
@click.argument("ref", metavar="REGISTRY/REPO")
@click.pass_context
def tags(ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool, as_json: bool, ref: str) -> None:
    """List the tags of a repository."""
    env = env_of(ctx)
    repo, spec = ops.resolve_ref(ref, _inventory(inventory_path))
    with ops.open_client(repo.registry, spec, _access(username, password_file, ca, insecure)) as client:
        found = sorted(client.tags(repo.repository))
    if as_json:
        env.json({"repository": f"{repo.registry}/{repo.repository}", "tags": found})
    else:
        for tag in found:
            env.out(tag)


@registry.command("inspect")
@access_options
@json_option
@click.argument("ref", metavar="REGISTRY/REPO:TAG")
@click.pass_context
def inspect(ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool, as_json: bool, ref: str) -> None:
    """Digest, media type, platforms, layers and sizes of an image."""
    env = env_of(ctx)
    repo, spec = ops.resolve_ref(ref, _inventory(inventory_path), need_reference=True)
    with ops.open_client(repo.registry, spec, _access(username, password_file, ca, insecure)) as client:
        found = ops.inspect(client, repo)
    if as_json:
        env.json(found.to_json())
        return
    env.out(f"{found.ref}\ndigest: {found.digest}\nmedia type: {found.media_type}\ntotal: {human_size(found.total)}")
    for image in found.images:
        env.out(f"\nplatform {image.platform or '?'}: manifest {short_id(image.digest)}, {human_size(image.size)}")
        env.out(table(["LAYER", "SIZE", "MEDIA TYPE"], [[layer.digest, human_size(layer.size), layer.media_type] for layer in image.layers]))


@registry.command("rm")
@access_options
@json_option
@click.option("--yes", is_flag=True, help="Delete even when other tags point at the same image (they go too).")
@click.argument("ref", metavar="REGISTRY/REPO:TAG")
@click.pass_context
def rm(ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool, as_json: bool, yes: bool, ref: str) -> None:
    """Delete an image's manifest (by the digest its tag points at).

    A registry deletes by digest, so every other tag on that digest goes too:
    they are listed, and --yes is needed to go ahead. The space is reclaimed
    by a garbage collection afterwards (shipper registry gc).
    """
    env = env_of(ctx)
    repo, spec = ops.resolve_ref(ref, _inventory(inventory_path), need_reference=True)
    if repo.digest:
        raise UsageError("give the image by tag (REGISTRY/REPO:TAG)", hint="shipper resolves the tag to its digest itself")
    with ops.open_client(repo.registry, spec, _access(username, password_file, ca, insecure)) as client:
        removal = ops.plan_removal(client, repo)
        if removal.other_tags and not yes:
            raise UsageError(
                f"deleting {repo} also deletes tags {', '.join(removal.other_tags)} (same digest {short_id(removal.digest)})",
                hint="add --yes to delete them all",
            )
        ops.remove(client, removal)
    gone = [repo.tag or "", *removal.other_tags]
    if as_json:
        env.json({"deleted": removal.digest, "repository": f"{repo.registry}/{repo.repository}", "tags": gone})
    else:
        env.out(f"deleted {repo.registry}/{repo.repository}@{removal.digest} (tags: {', '.join(gone)})")


@registry.command("login")
@access_options
@json_option
@click.argument("name", metavar="REGISTRY")
@click.pass_context
def login(ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool, as_json: bool, name: str) -> None:
    """Check a username and password against REGISTRY and keep them as docker login does.

    The password comes from --password-file (or '-' for stdin) or a prompt,
    never from the command line.
    """
    env = env_of(ctx)
    address, spec = ops.resolve(name, _inventory(inventory_path))
    username = username or (spec.username if spec else None)
    if not username:
        raise UsageError("name the user with --username")
    password_file = password_file or (spec.password_file if spec else None)
    if password_file:
        credentials = from_password_file(username, password_file)
    else:
        credentials = Credentials(username, getpass.getpass(f"password for {username} at {address}: "), "prompt")
    where = ops.login(address, spec, _access(None, None, ca, insecure), credentials)
    if as_json:
        env.json({"registry": str(address), "username": username, "stored_in": where})
    else:
        env.out(f"logged in to {address} as {username}; credentials kept in {where}")
