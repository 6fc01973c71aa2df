"""``shipper registry``: list, tags, inspect, rm, login."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Callable

import click

from shipper.cli.options import default_inventory, env_of, json_option
from shipper.cli.output import human_size, short_id, table
from shipper.errors import UsageError
from shipper.cli.targets import open_inventory
from shipper.inventory import Host, adhoc_host, load_inventory, select
from shipper.inventory.model import Inventory
from shipper.ops import registry as ops
from shipper import provision as host_ops
from shipper.registry.credentials import Credentials, from_password_file


def optional_inventory(path: str | None) -> Inventory | None:
    """The inventory's registries, when one is given or the default exists (its hosts are not resolved)."""
    path = path or default_inventory()
    return load_inventory(path, resolve_hosts=False) if Path(path).exists() else None


def access_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """How to reach and log in to the registry; never a password on the command line."""
    for option in reversed(
        [
            click.option("-i", "--inventory", "inventory_path", metavar="FILE", default=None, help="Inventory naming registries (registries:)."),
            click.option("-u", "--username", metavar="NAME", help="Log in as NAME (with --password-file or --password-stdin)."),
            click.option("--password-file", metavar="FILE", help="Read the password from FILE's first line ('-': stdin; --password-stdin says the same)."),
            click.option("--ca", metavar="FILE", help="The registry's CA (default: /etc/docker/certs.d/HOST:PORT/ca.crt, then the system's)."),
            click.option("--insecure", is_flag=True, help="Do not verify TLS; allow plain HTTP to a non-loopback address."),
        ]
    ):
        func = option(func)
    return func


def access(username: str | None, password_file: str | None, ca: str | None, insecure: bool) -> ops.Access:
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
    address, spec = ops.resolve(name, optional_inventory(inventory_path))
    with ops.open_client(address, spec, access(username, password_file, ca, insecure)) as client:
        repositories = sorted(client.catalog())
    if as_json:
        env.emit("repositories", {"registry": str(address), "repositories": repositories})
        env.summary["repositories"] = len(repositories)
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
    repo, spec = ops.resolve_ref(ref, optional_inventory(inventory_path))
    with ops.open_client(repo.registry, spec, access(username, password_file, ca, insecure)) as client:
        found = sorted(client.tags(repo.repository))
    if as_json:
        env.emit("tags", {"repository": f"{repo.registry}/{repo.repository}", "tags": found})
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
    repo, spec = ops.resolve_ref(ref, optional_inventory(inventory_path), need_reference=True)
    with ops.open_client(repo.registry, spec, access(username, password_file, ca, insecure)) as client:
        found = ops.inspect(client, repo)
    if as_json:
        env.emit("manifest", found.to_json())
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
    repo, spec = ops.resolve_ref(ref, optional_inventory(inventory_path), need_reference=True)
    if repo.digest:
        raise UsageError("give the image by tag (REGISTRY/REPO:TAG)", hint="shipper resolves the tag to its digest itself")
    with ops.open_client(repo.registry, spec, access(username, password_file, ca, insecure)) as client:
        removal = ops.plan_removal(client, repo)
        if removal.other_tags and not yes:
            raise UsageError(
                f"deleting {repo} also deletes tags {', '.join(removal.other_tags)} (same digest {short_id(removal.digest)})",
                hint="add --yes to delete them all",
            )
        ops.remove(client, removal)
    gone = [repo.tag or "", *removal.other_tags]
    if as_json:
        env.emit("deleted", {"digest": removal.digest, "repository": f"{repo.registry}/{repo.repository}", "tags": gone})
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
    address, spec = ops.resolve(name, optional_inventory(inventory_path))
    username = username or (spec.username if spec else None)
    if not username:
        raise UsageError("name the user with --username")
    password_file = password_file or (spec.password_file if spec else None)
    if password_file:
        credentials = from_password_file(username, password_file)
    else:
        credentials = Credentials(username, getpass.getpass(f"password for {username} at {address}: "), "prompt")
    where = ops.login(address, spec, access(None, None, ca, insecure), credentials)
    if as_json:
        env.emit("login", {"registry": str(address), "username": username, "stored_in": where})
    else:
        env.out(f"logged in to {address} as {username}; credentials kept in {where}")


# -- a registry of shipper's own on an inventory host ----------------------------------------


def _one_host(inventory_path: str | None, name: str) -> tuple[Inventory, Host]:
    inventory = open_inventory(inventory_path or default_inventory(), name)
    hosts = select(inventory, name, adhoc=adhoc_host)
    if len(hosts) != 1:
        raise UsageError(f"name one host; {name!r} names {len(hosts)}")
    return inventory, hosts[0]


@registry.command("up")
@click.option("-i", "--inventory", "inventory_path", metavar="FILE", default=None, help="The inventory file.")
@json_option
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--address", metavar="ADDR", help="The address engines reach it at (default: the host's SSH address).")
@click.option("-u", "--username", "--user", "user", metavar="NAME", required=True, help="The registry user.")
@click.option("--password-file", metavar="FILE", help="Its password: FILE's first line ('-': stdin); default: a prompt.")
@click.option("--tls", type=click.Choice(["self-signed"]), default="self-signed", show_default=True, help="A CA of shipper's own, or --cert/--key.")
@click.option("--cert", metavar="FILE", help="A server certificate to use instead (with --key).")
@click.option("--key", metavar="FILE", help="Its private key.")
@click.option("--ca", metavar="FILE", help="The CA of --cert (default: the certificate itself).")
@click.option("--image", default="registry:2", show_default=True, help="The registry image (registry:2 or registry:3), already on HOST.")
@click.option("--data", metavar="PATH", help="Where on HOST the images are stored (default: /var/lib/shipper/registry-PORT/data).")
@click.option("--trust", metavar="TARGET", default="all", show_default=True, help="Engines that get the CA (and the canary).")
@click.option("--login", is_flag=True, help="Also run docker login on those hosts (password on stdin).")
@click.option("--mirror-of", "mirror_of", metavar="NAME|HOST:PORT", help="Make it a site cache of that registry (pull-through: it fills itself, takes no pushes).")
@click.option("--upstream-username", metavar="NAME", help="--mirror-of: the upstream's user (default: the inventory's, for a NAME).")
@click.option("--upstream-password-file", metavar="FILE", help="--mirror-of: the upstream's password, FILE's first line (kept on HOST in a 0600 file only).")
@click.option("--upstream-ca", metavar="FILE", help="--mirror-of: the upstream's CA, when not a public one.")
@click.argument("host_name", metavar="HOST")
@click.pass_context
def up(
    ctx: click.Context, inventory_path: str | None, as_json: bool, port: int, address: str | None, user: str, password_file: str | None,
    tls: str, cert: str | None, key: str | None, ca: str | None, image: str, data: str | None, trust: str, login: bool, mirror_of: str | None,
    upstream_username: str | None, upstream_password_file: str | None, upstream_ca: str | None, host_name: str,
) -> None:  # fmt: skip
    """Run a private registry on HOST: htpasswd (bcrypt) + TLS, trusted by every engine, proven by a canary; with
    --mirror-of, a pull-through cache of another registry (a site cache)."""
    env = env_of(ctx)
    inventory, host = _one_host(inventory_path, host_name)
    if bool(cert) != bool(key):
        raise UsageError("--cert and --key go together")
    if (upstream_username or upstream_password_file or upstream_ca) and not mirror_of:
        raise UsageError("--upstream-* options describe the registry of --mirror-of", hint="add --mirror-of NAME|HOST:PORT")
    password = from_password_file(user, password_file).password if password_file else getpass.getpass(f"password for registry user {user}: ")
    mirror = ops.mirror_for(inventory, mirror_of, upstream_username, upstream_password_file, upstream_ca) if mirror_of else None
    request = host_ops.UpRequest(
        host, {user: password}, port=port, address=address, image=image, data=data,
        cert=(cert, key) if cert and key else None, ca=ca, trust=tuple(select(inventory, trust, adhoc=adhoc_host)) if trust else (), login=login,
        mirror_of=mirror,
    )  # fmt: skip
    result = host_ops.up(request)
    if as_json:
        env.emit("registry", result.to_json())
        env.summary["changed"] = result.changed
        return
    if result.changed:
        env.out(f"registry at {result.address}: " + "; ".join(result.changes))
    else:
        env.out(f"registry at {result.address}: unchanged")
    if result.trusted:
        env.out(f"trusted by the engines of {', '.join(result.trusted)}")
    if result.canary:
        env.out(f"canary {result.canary}: ok")


@registry.command("status")
@click.option("-i", "--inventory", "inventory_path", metavar="FILE", default=None, help="The inventory file.")
@json_option
@click.option("--port", type=int, default=5000, show_default=True)
@click.argument("host_name", metavar="HOST")
@click.pass_context
def status(ctx: click.Context, inventory_path: str | None, as_json: bool, port: int, host_name: str) -> None:
    """The registry shipper runs on HOST: container, image, address, TLS expiry, users, storage."""
    env = env_of(ctx)
    _, host = _one_host(inventory_path, host_name)
    found = host_ops.status(host, port)
    if as_json:
        env.emit("registry_status", found.to_json())
        return
    rows = [
        ["container", found.container or "none"], ["image", found.image or "-"], ["address", found.address or "-"],
        ["TLS expires", found.tls_expires or "-"], ["users", ", ".join(found.users) or "-"],
        ["storage", human_size(found.storage_bytes) if found.storage_bytes is not None else "-"],
    ]  # fmt: skip
    if found.mirror_of:
        rows += [["cache of", found.mirror_of], ["upstream", found.upstream]]
    env.out(table(["", f"{host.name}:{port}"], rows))


@registry.command("down")
@click.option("-i", "--inventory", "inventory_path", metavar="FILE", default=None, help="The inventory file.")
@json_option
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--purge", is_flag=True, help="Also remove its files and every stored image.")
@click.argument("host_name", metavar="HOST")
@click.pass_context
def down(ctx: click.Context, inventory_path: str | None, as_json: bool, port: int, purge: bool, host_name: str) -> None:
    """Stop the registry shipper runs on HOST (its stored images stay unless --purge)."""
    env = env_of(ctx)
    _, host = _one_host(inventory_path, host_name)
    done = host_ops.down(host, port, purge)
    if as_json:
        env.emit("down", {"host": host.name, "port": port, "done": done})
    else:
        env.out("\n".join(done) or "nothing to do")


@registry.command("gc")
@access_options
@json_option
@click.option("--port", type=int, default=5000, show_default=True)
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@click.option("--delete-untagged", is_flag=True, help="Also delete manifests no tag points at (refused on 2.x with indexes stored).")
@click.argument("host_name", metavar="HOST")
@click.pass_context
def gc(
    ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool,
    as_json: bool, port: int, dry_run: bool, delete_untagged: bool, host_name: str,
) -> None:  # fmt: skip
    """Reclaim the space of deleted images: read-only (proven), garbage-collect, read-write, every tag checked."""
    env = env_of(ctx)
    _, host = _one_host(inventory_path, host_name)
    if not (username and password_file):
        raise UsageError("gc needs the registry's credentials to check every tag", hint="give --username NAME --password-file FILE")
    result = host_ops.gc(host, port, from_password_file(username, password_file), dry_run, delete_untagged)
    if as_json:
        env.emit("gc", result.to_json())
        return
    reclaimed = human_size(result.reclaimed_bytes) if result.reclaimed_bytes is not None else "?"
    if dry_run:
        env.out(f"would delete {result.eligible_blobs} blob(s); read-only proven; {result.tags_checked} tag(s) checked, all resolve")
    else:
        env.out(f"deleted {result.eligible_blobs} blob(s), reclaimed {reclaimed}; read-only proven; {result.tags_checked} tag(s) checked, all resolve")
