"""``shipper sign``: signed release statements for images, checked by ``move --verify-key``."""

from __future__ import annotations

from pathlib import Path

import click

from shipper.cli.key import open_private_key
from shipper.cli.options import env_of, inventory_option, json_option
from shipper.cli.output import short_id, table
from shipper.cli.targets import choose, complete_targets, open_inventory
from shipper.errors import UsageError
from shipper.ops import release as ops

RELEASES_HELP = "Where the signed release statements go: DIR (default: $SHIPPER_RELEASES, else releases/ here)."


@click.command("sign")
@inventory_option
@json_option
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--from", "source", required=True, metavar="HOST", help="The host whose engine has the images.", shell_complete=complete_targets)
@click.option("--key", "key_file", required=True, metavar="KEY", help="The release's private key (shipper key generate).")
@click.option("--passphrase-file", metavar="FILE", help="The key's passphrase: the first line of FILE (- for stdin). Else a prompt on a terminal.")
@click.option("--releases", "releases_dir", metavar="DIR", help=RELEASES_HELP)
@click.pass_context
def sign(
    ctx: click.Context, inventory_path: str, as_json: bool, images: tuple[str, ...], source: str, key_file: str, passphrase_file: str | None,
    releases_dir: str | None,
) -> None:  # fmt: skip
    """Sign IMAGE... on HOST as releases: an in-toto statement (config digest, layers, tags) in a DSSE envelope."""
    env = env_of(ctx)
    key = open_private_key(key_file, passphrase_file)  # a wrong passphrase is refused before the engine is asked
    hosts = choose(env, open_inventory(inventory_path, source), source)
    if len(hosts) != 1:
        raise UsageError(f"--from must name one host; {source!r} names {len(hosts)}")
    directory = ops.directory_for(releases_dir)
    signed = ops.sign(hosts[0], images, key, directory)
    if as_json:
        for entry in signed:
            env.json_line({"event": "signed", "id": entry.image.id, "tags": list(entry.tags), "statement": str(entry.path)})
        return
    env.out(table(["TAGS", "ID", "STATEMENT"], [[",".join(e.tags) or "-", short_id(e.image.id), str(e.path)] for e in signed]))
    env.out(f"carry {directory} with the images: move --verify-key {Path(key_file).with_suffix('.pub').name} checks them")
