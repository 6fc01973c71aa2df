"""``shipper bundle``: carry images across an air gap."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import click

from shipper import signing
from shipper.cli.key import open_private_key
from shipper.cli.move import reporter_for, result_json, result_row, results_summary
from shipper.cli.options import env_of, finish, inventory_option, json_option
from shipper.cli.output import Env, human_size, short_id, table
from shipper.cli.registry import access, access_options, optional_inventory
from shipper.errors import UsageError
from shipper.cli.targets import choose, complete_targets, open_inventory
from shipper.ops import bundle as ops
from shipper.ops import bundle_push as pushing
from shipper.ops import oci_bundle as oci
from shipper.ops.oci_layout import is_oci_bundle
from shipper.ops import registry as registry_ops
from shipper.hostpool import exit_status_of
from shipper.platforms import parse_platform

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)i?B?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``4G``, ``700M``, ``1.5G`` -> bytes (binary units, as media sizes are usually read)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a size", hint="write it like 4G, 700M or 1048576")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    size = int(float(match.group(1)) * scale)
    if size < 1 << 20:
        raise UsageError("--split parts must be at least 1M")
    return size


@click.group()
def bundle() -> None:
    """Carry images across an air gap: create, verify, load, push, have."""


@bundle.command("create")
@inventory_option
@json_option
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--from", "source", metavar="HOST", help="The host whose engine has the images.", shell_complete=complete_targets)
@click.option("--from-registry", "registry_name", metavar="NAME|HOST:PORT", help="Take the images from this registry instead, as it stores them (an OCI layout: digests and signatures kept).")
@click.option("-u", "--username", metavar="NAME", help="--from-registry: log in as NAME (with --password-file).")
@click.option("--password-file", metavar="FILE", help="--from-registry: the password, the first line of FILE ('-': stdin).")
@click.option("--ca", metavar="FILE", help="--from-registry: the registry's CA.")
@click.option("--insecure", is_flag=True, help="--from-registry: do not verify TLS; allow plain HTTP to a non-loopback address.")
@click.option("-o", "--output", required=True, metavar="FILE", help="The bundle: FILE.tar, or FILE.tar.zst to compress with zstd.")
@click.option("--split", metavar="SIZE", help="Write parts FILE.000, FILE.001, … of at most SIZE (4G, 700M) each.")
@click.option("--have", "have_file", metavar="FILE", help="A have file from the far side (bundle have): leave out the layers it holds.")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="That platform of each image (linux/arm64): chosen from a multi-platform image where the source's store holds several, else checked.")
@click.option("--sign", "sign_key", metavar="KEY", help="Sign the bundle with this private key (shipper key generate): inside it, and as FILE.sig beside it.")
@click.option("--passphrase-file", metavar="FILE", help="The signing key's passphrase: the first line of FILE (- for stdin). Else a prompt on a terminal.")
@click.pass_context
def create(
    ctx: click.Context, inventory_path: str, as_json: bool, images: tuple[str, ...], source: str | None, registry_name: str | None,
    username: str | None, password_file: str | None, ca: str | None, insecure: bool, output: str, split: str | None,
    have_file: str | None, platform: str | None, sign_key: str | None, passphrase_file: str | None,
) -> None:  # fmt: skip
    """Save IMAGE... from HOST (or --from-registry R) into one verified file (a standard image archive inside; an
    OCI image layout from a registry)."""
    env = env_of(ctx)
    if passphrase_file and not sign_key:
        raise UsageError("--passphrase-file is for the signing key", hint="add --sign KEY")
    if bool(source) == bool(registry_name):
        raise UsageError("say where the images are: --from HOST or --from-registry REGISTRY (one of them)")
    signer = _signer(sign_key, passphrase_file) if sign_key else None  # a wrong passphrase is refused before any engine is asked
    if registry_name:
        if have_file:
            raise UsageError("--have is for bundles made from an engine", hint="a registry bundle holds every blob of its images")
        _create_from_registry(env, as_json, inventory_path, registry_name, registry_ops.Access(username, password_file, ca, insecure),
                              images, Path(output), split, platform, signer)  # fmt: skip
        return
    assert source is not None
    hosts = choose(env, open_inventory(inventory_path, source), source)
    if len(hosts) != 1:
        raise UsageError(f"--from must name one host; {source!r} names {len(hosts)}")
    held = ops.held_everywhere(json.loads(Path(have_file).read_text())) if have_file else None
    path = Path(output)
    with reporter_for(env, as_json) as reporter:
        created = ops.create(
            hosts[0], images, path, compress=path.suffix == ".zst", split=parse_size(split) if split else None, held=held, reporter=reporter,
            platform=parse_platform(platform) if platform else None, signer=signer,
        )  # fmt: skip
    if as_json:
        env.json_line({"event": "created", **created.to_json()})  # after the progress events: JSON lines, as move writes
        return
    env.out(table(["IMAGE", "ID", "TAGS", "SIZE"], [[i.tags[0] if i.tags else "-", short_id(i.id), ",".join(i.tags), human_size(i.size)] for i in created.images]))
    left = f"; {len(created.left_out)} layer(s) the far side holds left out" if created.left_out else ""
    env.out(f"wrote {', '.join(str(p) for p in created.parts)} ({human_size(created.bytes_written)}){left}; checksums in {path}.sha256")
    if created.signature is not None:
        env.out(f"signed with {sign_key}: the signature is inside the bundle and in {created.signature}")


def _create_from_registry(
    env: Env, as_json: bool, inventory_path: str, registry_name: str, how: Any, images: tuple[str, ...], path: Path, split: str | None,
    platform: str | None, signer: Callable[[bytes], str] | None,
) -> None:  # fmt: skip
    address, spec = registry_ops.resolve(registry_name, optional_inventory(inventory_path))
    with registry_ops.open_client(address, spec, how) as client:
        created = oci.create_from_registry(
            client, images, path, compress=path.suffix == ".zst", split=parse_size(split) if split else None,
            platform=parse_platform(platform) if platform else None, signer=signer,
        )  # fmt: skip
    if as_json:
        env.json_line({"event": "created", **created.to_json()})
        return
    rows = [[f"{e.repository}:{e.tag}" if e.tag else f"{e.repository}@{e.digest[:19]}…", e.digest[:19] + "…", e.media_type.rsplit(".", 2)[-2],
             f"of {e.subject[:19]}…" if e.subject else ""] for e in created.entries]  # fmt: skip
    env.out(table(["REFERENCE", "DIGEST", "KIND", "SIGNS"], rows))
    env.out(f"wrote {', '.join(str(p) for p in created.parts)} ({human_size(created.bytes_written)}) from {address}: an OCI layout, digests as there")
    if created.signature is not None:
        env.out(f"signed: the signature is inside the bundle and in {created.signature}")


def _signer(key_file: str, passphrase_file: str | None) -> Callable[[bytes], str]:
    """The private key opened now (a wrong passphrase is refused before anything else): blob -> signature."""
    key = open_private_key(key_file, passphrase_file)
    return lambda blob: signing.sign(key, blob)


_KEY = click.option(
    "--key", "keys", multiple=True, metavar="PUB",
    help="Require a signature by this public key (repeat for several: one must verify). Unsigned, other keys, or any changed byte: refused.",
)  # fmt: skip


def _report(env: Env, verified: Any, path: Path) -> None:
    manifest = verified.manifest
    env.out(f"{path}: sound ({human_size(verified.size)}, {len(manifest.members)} members, made {manifest.created} by {manifest.created_by} from {manifest.source})")
    if verified.signed_by:
        env.out(f"signed: the signature verifies with {verified.signed_by}")
    elif verified.signature is not None:
        env.out("signed, not checked: give --key PUB to check the signature")
    if not verified.checksum_file:
        env.out(f"note: no {path}.sha256 beside it: the file as a whole could not be checked, only its content")
    rows = [[",".join(i.tags) or "-", short_id(i.id), i.platform, len(i.layers), human_size(i.size)] for i in manifest.images]
    env.out(table(["TAGS", "ID", "PLATFORM", "LAYERS", "SIZE"], rows))
    if manifest.relies_on:
        env.out(f"delta bundle: relies on {len(manifest.relies_on)} layer(s) the far side must hold")


def _verified_json(verified: Any) -> dict[str, Any]:
    manifest = verified.manifest
    return {"sound": True, "bytes": verified.size, "checksum_file": verified.checksum_file, "relies_on": manifest.relies_on,
            "signed": verified.signature is not None, "signed_by": verified.signed_by or None,
            "created": manifest.created, "created_by": manifest.created_by, "source": manifest.source,
            "images": [{"id": i.id, "tags": list(i.tags), "platform": i.platform, "layers": list(i.layers), "size": i.size} for i in manifest.images]}  # fmt: skip


@bundle.command("verify")
@json_option
@_KEY
@click.argument("file", metavar="FILE")
@click.pass_context
def verify(ctx: click.Context, as_json: bool, keys: tuple[str, ...], file: str) -> None:
    """Check every checksum and digest of a bundle (and its signature, with --key) and say what is inside."""
    env = env_of(ctx)
    if is_oci_bundle(Path(file)):
        found = ops.verify_oci(Path(file), [Path(k) for k in keys])
        if as_json:
            env.emit("verified", _oci_json(found))
        else:
            _report_oci(env, found, Path(file))
        return
    verified = ops.verify(Path(file), [Path(k) for k in keys])
    if as_json:
        env.emit("verified", _verified_json(verified))
    else:
        _report(env, verified, Path(file))


def _oci_json(found: Any) -> dict[str, Any]:
    return {"sound": True, "bytes": found.size, "checksum_file": found.checksum_file, "kind": "oci-layout", "source": found.source,
            "created": found.created, "signed": found.signature is not None, "signed_by": found.signed_by or None,
            "images": [{"repository": e.repository, "tag": e.tag, "digest": e.digest, "media_type": e.media_type, "subject": e.subject or None}
                       for e in found.entries]}  # fmt: skip


def _report_oci(env: Env, found: Any, path: Path) -> None:
    env.out(f"{path}: sound (an OCI layout from {found.source}, made {found.created}; {len(found.manifests)} manifest(s), {len(found.blob_sizes)} blob(s))")
    if found.signed_by:
        env.out(f"signed: the signature verifies with {found.signed_by}")
    elif found.signature is not None:
        env.out("signed, not checked: give --key PUB to check the signature")
    rows = [[f"{e.repository}:{e.tag}" if e.tag else e.repository, e.digest[:19] + "…", f"of {e.subject[:19]}…" if e.subject else ""] for e in found.entries]
    env.out(table(["REFERENCE", "DIGEST", "SIGNS"], rows))


@bundle.command("load")
@inventory_option
@json_option
@click.argument("file", metavar="FILE")
@click.option("--to", "target", required=True, metavar="TARGET", help="Hosts: a host, a group, or an Ansible host pattern.", shell_complete=complete_targets)
@click.option("--force", is_flag=True, help="Load even where the images are already under those tags.")
@_KEY
@click.pass_context
def load(ctx: click.Context, inventory_path: str, as_json: bool, file: str, target: str, force: bool, keys: tuple[str, ...]) -> None:
    """Verify a bundle, then load it into TARGET's engines (each gets only what it lacks; tags last). A host whose
    inventory sets trusted_keys takes only bundles signed by one of them."""
    env = env_of(ctx)
    hosts = choose(env, open_inventory(inventory_path, target), target)
    with reporter_for(env, as_json) as reporter:
        verified, results = ops.load(Path(file), hosts, force, reporter, [Path(k) for k in keys])
    if as_json:
        env.json_line({"event": "verified", **_verified_json(verified)})
        for result in results:
            env.json_line({"event": "result", **result_json(result)})
        env.summary.update(results_summary(results))
    else:
        env.out(table(["HOST", "RESULT", "SENT", "TIME", "RATE"], [result_row(r) for r in results]))
        for result in results:
            if result.error is not None:
                env.error(result.error)
    finish(exit_status_of([r.error for r in results]))


@bundle.command("push")
@access_options
@json_option
@click.argument("file", metavar="FILE")
@click.option("--registry", "registry_name", required=True, metavar="NAME|HOST:PORT", help="The registry to seed.")
@_KEY
@click.pass_context
def push(
    ctx: click.Context, inventory_path: str | None, username: str | None, password_file: str | None, ca: str | None, insecure: bool,
    as_json: bool, file: str, registry_name: str, keys: tuple[str, ...],
) -> None:  # fmt: skip
    """Seed a registry straight from a bundle (no engine): only the missing blobs, manifests and tags last."""
    env = env_of(ctx)
    address, spec = registry_ops.resolve(registry_name, optional_inventory(inventory_path))
    verified = pushing.verify_for_push(Path(file), [Path(k) for k in keys])  # the registry is not asked anything before this passed
    with registry_ops.open_client(address, spec, access(username, password_file, ca, insecure)) as client:
        pushed = pushing.push_verified(Path(file), client, verified)
    if as_json:
        env.emit("pushed", pushed.to_json())
    else:
        env.out(f"pushed to {address}: {len(pushed.uploaded)} blob(s) uploaded, {len(pushed.present)} already there; tags {', '.join(pushed.tags)}")


@bundle.command("have")
@inventory_option
@json_option
@click.argument("target", metavar="TARGET", shell_complete=complete_targets)
@click.option("-o", "--output", required=True, metavar="FILE", help="Where to write the have file.")
@click.pass_context
def have(ctx: click.Context, inventory_path: str, as_json: bool, target: str, output: str) -> None:
    """On the far side: list what TARGET's engines hold, for bundle create --have."""
    env = env_of(ctx)
    document = ops.have(choose(env, open_inventory(inventory_path, target), target))
    Path(output).write_text(json.dumps(document, indent=1) + "\n")
    if as_json:
        env.emit("have", {"output": output, "layers": {host: len(chains) for host, chains in document["engines"].items()}})
    else:
        env.out(f"wrote {output}: layers held by {', '.join(document['engines'])}")
