"""Air-gapped bundles: create on one side, verify, then load into engines or push into a registry on the other.

- ``create``: the images saved from a host's engine (by name: the archive
  keeps its tags, so a plain ``docker load -i`` works), checked as they stream
  by, straight into the file (see bundle/format.py); ``have`` (chain IDs the
  far side holds, from ``bundle have``) leaves those layers out.
- ``load``: the whole bundle is verified first; then, as ``move`` does, each
  target gets only the layers it lacks, loads untagged, its images are checked,
  and only then do the tags move.
- ``push``: verified first; blobs uploaded straight from the bundle (layers
  uncompressed, as OCI allows: their digest is their diff ID, so "already
  there" is a HEAD away), only the missing ones; manifests and tags last.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from shipper.archive.layers import chain_ids, needed_layers
from shipper.archive.layerstore import LayerStore
from shipper.archive.savestream import ArchiveError, SaveStreamFilter, StreamStats
from shipper.ops.oci_layout import OciVerified, docker_save_chunks, engine_images, is_oci_bundle, read_oci_verified
from shipper.ops.release_policy import trusted_keys
from shipper.bundle import BundleError, BundleImage, BundleWriter, Verified, check_signature, read_verified
from shipper.bundle.format import BundleManifest, trailer_for
from shipper.engine import connect
from shipper.errors import ShipperError, UsageError
from shipper.inventory.model import Host
from shipper.engine.pool import EnginePool
from shipper.hostpool import for_each_host
from shipper.transfer.plan import SourceImage, TargetPlan, target_plan
from shipper.transfer.survey import source_images, target_view, with_requested
from shipper.transfer.commit import TargetResult, finish_target, results_in_order
from shipper.ops.move_recovery import merge, resend_in_full
from shipper.transfer import Delivery, FileSource, SaveRequest, deliver, make_sink, make_source
from shipper.transfer.resume import receiver_spec
from shipper.platforms import Platform, normalized
from shipper.progress import NullReporter, Reporter

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


# -- have ------------------------------------------------------------------------------------


def have(targets: Sequence[Host]) -> dict[str, Any]:
    """What the far side's engines hold: per host, the chain IDs of every layer its images stand on."""
    with EnginePool() as engines:
        outcomes = for_each_host(list(targets), lambda host: sorted(target_view(host, engines).chains))
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        raise failed[0].error  # type: ignore[misc]
    return {"format": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "engines": {o.host.name: o.value for o in outcomes}}


def held_everywhere(have_document: dict[str, Any]) -> set[str]:
    """Chain IDs every engine of a ``have`` document holds (a bundle may rely only on those)."""
    try:
        sets = [set(chains) for chains in have_document["engines"].values()]
    except (KeyError, AttributeError, TypeError):
        raise UsageError("the have file is not one shipper bundle have wrote") from None
    return set.intersection(*sets) if sets else set()


# -- create ----------------------------------------------------------------------------------


@dataclass
class Created:
    parts: list[Path]
    images: list[BundleImage]
    bytes_written: int
    left_out: list[str]  # layers the far side holds, not in the bundle
    source_read: str = "save"  # store: read from the local engine's layer store; save: docker save
    signature: Path | None = None  # PATH.sig, when signed

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.parts], "bytes": self.bytes_written, "left_out": self.left_out, "source_read": self.source_read,
            "signature": str(self.signature) if self.signature else None,
            "images": [{"id": i.id, "tags": list(i.tags), "size": i.size, "layers": len(i.layers)} for i in self.images],
        }  # fmt: skip


def _bundle_images(engine: Any, images: Sequence[SourceImage], platform: Platform | None) -> list[BundleImage]:
    found: dict[str, BundleImage] = {}
    for image in images:
        details = engine.inspect_image(image.save_as, platform) if image.save_as else engine.inspect_image(image.id)
        tags = tuple(t for t in details.tags if t == image.name) if image.name else ()
        previous = found.get(image.id)
        merged = tuple(dict.fromkeys((*(previous.tags if previous else ()), *tags)))
        variant = f"/{details.variant}" if details.variant else ""
        found[image.id] = BundleImage(image.id, merged, image.size, image.layers, f"{details.os}/{details.architecture}{variant}")
    return list(found.values())


def create(
    source: Host, requested: Sequence[str], output: Path, compress: bool = False, split: int | None = None,
    held: set[str] | None = None, reporter: Reporter | None = None, platform: Platform | None = None,
    signer: Callable[[bytes], str] | None = None,
) -> Created:  # fmt: skip
    """Save ``requested`` from ``source`` into a bundle at ``output``; ``held``: chain IDs the far side has;
    ``platform``: each image must be that platform's (chosen from multi-platform images where the source holds several);
    ``signer``: signs the bundle's manifest (signing.sign with the release key), inside the bundle and as PATH.sig."""
    reporter = reporter or NullReporter()
    if output.exists() or output.with_name(output.name + ".000").exists():
        raise UsageError(f"{output} exists already", hint="choose another name, or remove it first")
    with EnginePool() as engines:
        engine = engines.get(source)
        images = source_images(engine, requested, platform)
        chosen = platform if any(i.save_as for i in images) else None
        bundle_images = _bundle_images(engine, images, chosen)
        by_manifest = engine.info().image_store == "containerd"  # IDs there are manifest digests, not what the archive holds
    signatures: list[str] = []

    def keep_signature(manifest: bytes) -> str:  # the signature goes into the bundle, and beside it once committed
        signatures.append(signer(manifest) if signer is not None else "")
        return signatures[-1]

    layers = {i.id: list(i.layers) for i in bundle_images}
    left_out = sorted({d for ls in layers.values() for d in ls} - needed_layers(layers.values(), held)) if held else []
    names = tuple(dict.fromkeys(i.name or i.save_as or i.id for i in images))
    store = _local_store(source, layers)
    checker = SaveStreamFilter(
        [] if by_manifest else [i.id for i in bundle_images], verify_content=True, layers=layers, keep_tags=True, absent=left_out,
        trailer=_trailer(bundle_images, source.name, left_out, keep_signature if signer is not None else None),
    )  # fmt: skip
    writer = BundleWriter(output, compress, split)
    stream: Any = (
        _StoreSource(store, layers, {i.id: list(i.tags) for i in bundle_images}, set(left_out)) if store is not None
        else make_source("ssh" if source.engine.scheme == "ssh" else "direct", source, SaveRequest(names, chosen))
    )  # fmt: skip
    reporter.start(output.name, sum(i.size for i in bundle_images))
    try:
        for tag, piece in checker.run_tagged(stream.chunks()):
            if tag is None or tag not in left_out:
                writer.write(piece)
                reporter.advance(output.name, writer.written)
        failure = stream.failure()
        if failure is not None:
            raise failure
        parts = writer.commit()
        # Beside the bundle for openssl and cosign; an unsigned bundle must not keep another's stale signature there.
        beside = writer.beside(".sig", signatures[0].encode()) if signer is not None else None
        if signer is None:
            Path(f"{output}.sig").unlink(missing_ok=True)
    except ArchiveError as exc:
        writer.abort()
        stream.abort()
        raise stream.failure() or BundleError(f"the save from {source.describe()} is not sound: {exc}") from None
    except BaseException:
        writer.abort()
        stream.abort()
        raise
    reporter.finish(output.name, "written")
    return Created(parts, bundle_images, writer.written, left_out, "store" if store is not None else "save", beside)


def _local_store(source: Host, layers: dict[str, list[str]]) -> LayerStore | None:
    """The source engine's layer store, when it is on this machine and readable here (see archive/layerstore.py):
    reading just the layers skips ``docker save``'s export of everything to disk first."""
    if source.engine.scheme != "unix":
        return None
    with connect(source) as engine:
        info = engine.info()
    if info.storage_driver != "overlay2" or info.image_store != "classic" or not info.data_root:
        return None
    store = LayerStore(info.data_root)
    every = {d for diff_ids in layers.values() for d in diff_ids}
    return None if store.unreadable(layers, every) else store


class _StoreSource:
    """A bundle's stream read from the local engine's store (only the layers it will hold)."""

    def __init__(self, store: LayerStore, layers: dict[str, list[str]], tags: dict[str, list[str]], left_out: set[str]) -> None:
        every = {d for diff_ids in layers.values() for d in diff_ids}
        self._chunks = store.save_stream(layers, every - left_out, tags)

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def failure(self) -> ShipperError | None:
        return None

    def abort(self) -> None:
        pass


def _trailer(images: list[BundleImage], source: str, left_out: list[str], signer: Callable[[bytes], str] | None = None) -> Any:
    """The bundle's manifest lists the members it really holds: not the layers left out. Its images are named
    by their config digests, as the archive holds them (a source in the containerd store names them by manifest)."""

    def without_left_out(stats: Any) -> list[tuple[str, bytes]]:
        kept = {name: m for name, m in stats.members.items() if m.digest not in left_out}
        make = trailer_for([_by_config(image, stats.images) for image in images], source, left_out, signer)
        return make(type(stats)(stats.bytes_in, stats.bytes_out, kept, stats.images))

    return without_left_out


def _by_config(image: BundleImage, archived: dict[str, list[str]]) -> BundleImage:
    """``image`` under the config digest the archive holds it by: its own ID, or the one image with its layers."""
    if image.id in archived:
        return image
    same = [config for config, layers in archived.items() if tuple(layers) == image.layers]
    if len(same) != 1:
        raise ArchiveError(f"the save holds {len(same)} images with the layers of {image.id}: cannot tell which it is")
    return replace(image, id=same[0])


# -- load ------------------------------------------------------------------------------------


def _requested(verified: Verified) -> list[SourceImage]:
    """The bundle's images as move plans see them: one entry per tag (or one by ID)."""
    wanted = []
    for image in verified.manifest.images:
        for name in image.tags or (None,):
            wanted.append(SourceImage(name or image.id, name, image.id, image.size, image.layers))
    return wanted


def plan_targets(targets: Sequence[Host], verified: Verified, engines: EnginePool, force: bool) -> list[TargetPlan]:
    images = _requested(verified)
    relied = verified.manifest.relies_on
    oci = "index.json" in verified.manifest.members  # an OCI layout: a containerd store can do without layers it holds

    def plan(host: Host) -> TargetPlan:
        view = target_view(host, engines)
        missing = [d for i in verified.manifest.images for d, c in zip(i.layers, chain_ids(i.layers)) if d in relied and c not in view.chains]
        if missing:
            return TargetPlan(host, "failed", error=BundleError(
                f"{host.name} lacks {len(missing)} layer(s) this delta bundle relies on (first: {missing[0][:19]}…)",
                hint="load the full bundle there, or make the delta bundle against that host's own have file",
            ))  # fmt: skip
        planned = target_plan(host, with_requested(view, host, images, engines), images, force, "ssh", stream_oci=oci)
        return planned if planned.action != "send" else _dedupe(planned)

    outcomes = for_each_host(list(targets), plan)
    return [o.value if o.value is not None else TargetPlan(o.host, "failed", error=o.error) for o in outcomes]


def _dedupe(target: TargetPlan) -> TargetPlan:
    return replace(target, send_ids=tuple(dict.fromkeys(target.send_ids)))


def verify(path: Path, keys: Sequence[Path] = ()) -> Verified:
    """The bundle read whole and checked (nothing is touched anywhere); with ``keys``, its signature must verify
    with one of them (signing.TrustError names what failed)."""
    verified = read_verified(path)
    check_signature(verified, path, keys)
    return verified


def verify_oci(path: Path, keys: Sequence[Path] = ()) -> OciVerified:
    """``verify`` for a bundle made from a registry (oci_bundle.py)."""
    found = read_oci_verified(path)
    check_signature(found, path, keys)
    return found


def prepare(path: Path, targets: Sequence[Host], keys: Sequence[Path], engines: EnginePool) -> tuple[Verified, Any]:
    """The bundle read whole and checked (each target's own ``trusted_keys``, with ``keys``, must verify it), as
    engines take it, and where its docker-save stream comes from. A bundle made from a registry (an OCI layout)
    gives the targets' platform's manifests, streamed as docker save writes them."""
    if not is_oci_bundle(path):
        verified = read_verified(path)
        for required in dict.fromkeys(tuple(keys) + trusted_keys(host) for host in targets):
            check_signature(verified, path, required)
        return verified, FileSource(path)
    found = read_oci_verified(path)
    for required in dict.fromkeys(tuple(keys) + trusted_keys(host) for host in targets):
        check_signature(found, path, required)
    images = engine_images(found, one_platform(targets, engines))
    bundle_images = [BundleImage(i.config, i.tags, i.size, i.diff_ids, i.platform) for i in images]
    verified = Verified(BundleManifest(bundle_images, source=found.source, created=found.created), StreamStats(), found.checksum_file,
                        found.size, found.manifest_data, found.signature, found.signed_by)  # fmt: skip
    return verified, _Generated(path, lambda: docker_save_chunks(path, found, images))


def load(
    path: Path, targets: Sequence[Host], force: bool = False, reporter: Reporter | None = None, keys: Sequence[Path] = (),
) -> tuple[Verified, list[TargetResult]]:  # fmt: skip
    """Verify the bundle, then load it into every target that lacks its images, tags last (a bundle made from a
    registry: the targets' platform's images). A signature is required
    where ``keys`` are given or a target trusts keys of its own (``trusted_keys``): one of them must verify it, for
    every target, before any engine is touched."""
    reporter = reporter or NullReporter()
    with EnginePool() as engines:
        verified, source = prepare(path, targets, keys, engines)  # nothing is touched before the whole bundle passed
        return verified, _load_verified(path, verified, targets, force, reporter, engines, source)


def one_platform(targets: Sequence[Host], engines: EnginePool) -> Platform:
    """The platform of the targets' engines (those that answer: the others fail in their own plans)."""
    found: dict[Platform, list[str]] = {}
    for host in targets:
        try:
            info = engines.get(host).info()
        except ShipperError:
            continue
        found.setdefault(normalized(info.os, info.arch), []).append(host.name)
    if len(found) > 1:
        said = "; ".join(f"{p} on {', '.join(hosts)}" for p, hosts in found.items())
        raise BundleError(f"the targets run on several platforms ({said})", hint="load the bundle into each platform's hosts in turn")
    return next(iter(found), normalized("linux", "amd64"))


class _Generated:
    """A docker-save stream made on the fly from a bundle (a registry bundle's layout, for engines)."""

    def __init__(self, path: Path, chunks: Callable[[], Iterator[bytes]]) -> None:
        self.path, self._chunks = path, chunks

    def chunks(self) -> Iterator[bytes]:
        return self._chunks()

    def failure(self) -> ShipperError | None:
        return None

    def abort(self) -> None:
        pass

    def broken(self, problem: Exception) -> ShipperError:
        return BundleError(f"{self.path.name} changed while it was being loaded: {problem}")


def _load_verified(
    path: Path, verified: Verified, targets: Sequence[Host], force: bool, reporter: Reporter, engines: EnginePool, source: Any,
) -> list[TargetResult]:  # fmt: skip
    started = time.monotonic()
    for host in targets:
        reporter.phase(host.name, "surveying")
    plans = plan_targets(targets, verified, engines, force)
    senders = [t for t in plans if t.action == "send"]
    delivery = _deliver_file(path, verified, senders, reporter, source) if senders else None
    layers = {i.id: i.layers for i in verified.manifest.images}
    if delivery is not None:
        resend = resend_in_full(senders, delivery, engines, layers, {})
        if resend is not None:
            merge(delivery, _deliver_file(path, verified, resend.targets, reporter, source), resend)
    movers = [t for t in plans if t.action in ("send", "tag")]
    by_name = {t.host.name: t for t in movers}
    outcomes = for_each_host([t.host for t in movers], lambda h: finish_target(by_name[h.name], delivery, started, reporter, engines, layers))
    return results_in_order(plans, {o.host.name: o.value for o in outcomes}, engines)




def _deliver_file(path: Path, verified: Verified, senders: Sequence[TargetPlan], reporter: Reporter, source: Any = None) -> Delivery:
    route = "ssh" if all(t.host.engine.scheme == "ssh" for t in senders) else "direct"
    images = [SourceImage(i.id, None, i.id, i.size, i.layers, os=i.platform.partition("/")[0], architecture=i.platform.split("/")[1] if "/" in i.platform else "")
              for i in verified.manifest.images]  # fmt: skip
    # Over SSH, each target takes the bundle layer by layer where it can (transfer/resume.py): a cut keeps what arrived.
    receivers = {t.host.name: receiver_spec(t, images) if route == "ssh" else None for t in senders}
    sinks = {t.host.name: (t.host, make_sink(route, t.host, t.skip_layers, receivers[t.host.name])) for t in senders}
    for target in senders:
        reporter.start(target.host.name, verified.size)
    layers = {i.id: i.layers for i in verified.manifest.images}
    delivery = deliver("bundle", source or FileSource(path), sinks, list(layers), layers, reporter, absent=verified.manifest.relies_on)
    delivery.resumable = {name for name, spec in receivers.items() if spec is not None}
    return delivery
