"""``shipper key``: release keys for signed bundles (ECDSA P-256, PEM; the private key encrypted)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives.asymmetric import ec

from shipper import signing
from shipper.cli.options import env_of, json_option
from shipper.errors import UsageError


@click.group()
def key() -> None:
    """Release keys: shipper key generate -o NAME writes NAME.key and NAME.pub."""


@key.command("generate")
@json_option
@click.option("-o", "--output", required=True, metavar="NAME", help="Write NAME.key (mode 0600) and NAME.pub; neither may exist.")
@click.option("--passphrase-file", metavar="FILE", help="The private key's passphrase: the first line of FILE (- for stdin). Else a prompt on a terminal.")
@click.option("--no-passphrase", is_flag=True, help="Leave the private key unencrypted (keep it somewhere only you can read).")
@click.pass_context
def generate(ctx: click.Context, as_json: bool, output: str, passphrase_file: str | None, no_passphrase: bool) -> None:
    """Generate an ECDSA P-256 key pair for signing bundles (cosign's and openssl's format)."""
    env = env_of(ctx)
    if passphrase_file and no_passphrase:
        raise UsageError("--passphrase-file and --no-passphrase say opposite things", hint="give one of them")
    if passphrase_file:
        passphrase: bytes | None = signing.read_passphrase(passphrase_file)
    elif no_passphrase:
        passphrase = None
    elif sys.stdin.isatty():
        passphrase = click.prompt("passphrase for the private key", hide_input=True, confirmation_prompt=True, err=True).encode() or None
        if passphrase is None:
            raise UsageError("an empty passphrase", hint="type one, or say --no-passphrase to leave the key unencrypted")
    else:
        raise UsageError("no passphrase for the private key, and no terminal to ask on", hint="--passphrase-file FILE, or --no-passphrase")
    private, public = signing.generate(Path(output), passphrase)
    if as_json:
        env.emit("key", {"private": str(private), "public": str(public), "encrypted": passphrase is not None})
        return
    env.out(f"wrote {private} (private{', encrypted' if passphrase else ', NOT encrypted'}; mode 0600) and {public} (public: give it to the far side)")


def open_private_key(key_file: str, passphrase_file: str | None) -> ec.EllipticCurvePrivateKey:
    """The release key at ``key_file``, its passphrase from the file's first line, else a prompt on a terminal
    (never argv); TrustError for a wrong passphrase or a file that is not a key."""
    path = Path(key_file)
    if passphrase_file:
        return signing.load_private(path, signing.read_passphrase(passphrase_file))
    try:
        return signing.load_private(path, None)
    except signing.TrustError:
        if not (signing.is_encrypted(path) and sys.stdin.isatty()):
            raise
        return signing.load_private(path, click.prompt(f"passphrase for {path}", hide_input=True, err=True).encode())
