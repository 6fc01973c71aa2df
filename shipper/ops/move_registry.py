"""``move --via registry``: the source's engine pushes, each target's engine pulls.

1. On the source, each image gets a temporary name in the registry
   (``R/REPO:TAG``), is pushed with shipper's credentials (sent to the engine
   in the ``X-Registry-Auth`` header, never on a command line), and the
   temporary name is taken off again (or put back as it was).
2. Each target pulls the image *by digest* (``R/REPO@sha256:…``): nothing is
   tagged by the pull, so a failed or partial pull leaves the target's tags
   as they were. The usual commit follows (image ID and layers checked, then
   the tags moved), and the digest reference is taken off again.
3. Tiers: a target whose ``registry_mirror`` names a site cache (a registry of
   the inventory's, ``registry up --mirror-of R``) pulls from that cache, which
   fetches from R once for its whole site: shipper fills every cache at once
   (cache_fill.py), and each site pulls as soon as its own cache is filled (a
   slow or silent cache holds back its site only). Where the cache fails, the
   target pulls from R itself, and its result says so.

An engine skips layers it already holds only when it knows their compressed
digests from an earlier pull or push (``../shared/design.md`` §7): a base that
arrived by ``docker load`` is pulled again. The plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import AbstractSet, Mapping, Sequence

from shipper.engine import Engine
from shipper.errors import InventoryError, ShipperError, UsageError
from shipper.inventory.model import Host, Inventory
from shipper.ops import cache_fill
from shipper.ops import registry as registry_ops
from shipper.engine.pool import EnginePool
from shipper.hostpool import for_each_host, worker_pool
from shipper.transfer import Delivery
from shipper.imageref import without_registry
from shipper.progress import Reporter
from shipper.registry import Address, Credentials, Manifest, RegistryClient


FILL_TIMEOUT = 10.0  # seconds a site cache may take to answer a question of the fill (it answers before it fetches)
FILL_RETRIES = 1  # a cache that does not answer twice is not waited on again: its site pulls from the central registry


@dataclass(frozen=True)
class RegistryRoute:
    """The registry a move goes through, as the engines reach it, and the credentials they are given."""

    address: Address
    credentials: Credentials | None
    ca: str | None = None
    insecure: bool = False
    mirrors: Mapping[str, "RegistryRoute"] = field(default_factory=dict, compare=False, hash=False)  # host -> its site cache

    def client(self, timeout: float = 30.0) -> RegistryClient:
        return RegistryClient(self.address, self.credentials, ca_file=self.ca, insecure=self.insecure, timeout=timeout)

    def check(self) -> None:
        """Log in to the registry from here first: a wrong password or an unknown CA stops the move before any engine is touched."""
        with self.client() as client:
            client.ping()

    def auth_config(self) -> dict[str, str] | None:
        if self.credentials is None:
            return None
        return {"username": self.credentials.username, "password": self.credentials.password, "serveraddress": self.address.host}


def route_for(inventory: Inventory, name: str | None, ca: str | None = None, insecure: bool = False) -> RegistryRoute:
    """The registry a move goes through, from its name in the inventory's ``registries:`` or an address
    (the inventory's only registry when none is named), with its CA, its credentials and ``insecure``:
    the one way the command line and playbooks turn a name into a route. ``ca`` and ``insecure`` (the
    command line's) win over the inventory's."""
    if name is None:
        if len(inventory.registries) != 1:
            raise UsageError("--via registry needs --registry NAME|HOST:PORT", hint="or name exactly one registry in the inventory's registries:")
        name = next(iter(inventory.registries))
    address, spec = registry_ops.resolve(name, inventory)
    credentials = registry_ops.credentials_for(address, spec, registry_ops.Access())
    route = RegistryRoute(address, credentials, ca or (spec.ca if spec else None), insecure or bool(spec and spec.insecure))
    return RegistryRoute(route.address, route.credentials, route.ca, route.insecure, _mirrors(inventory, route))


def _mirrors(inventory: Inventory, central: RegistryRoute) -> dict[str, RegistryRoute]:
    """host -> the site cache its ``registry_mirror`` names (a registry of the inventory's, or HOST:PORT)."""
    found: dict[str, RegistryRoute] = {}
    for host in inventory.hosts.values():
        name = host.vars.get("registry_mirror")
        if not name:
            continue
        where = host.var_sources.get("registry_mirror", str(host.origin))
        if not isinstance(name, str):
            raise InventoryError(f"registry_mirror of {host.name} must name a registry (set in {where})")
        if name not in inventory.registries and ":" not in name:  # a typo would only show as every pull falling back
            raise InventoryError(
                f"registry_mirror of {host.name} names {name!r}, which is not in the inventory's registries: (set in {where})",
                hint="name a registry of registries:, or give its HOST:PORT",
            )
        address, spec = registry_ops.resolve(name, inventory)
        if address == central.address:
            continue
        credentials = registry_ops.credentials_for(address, spec, registry_ops.Access())
        found[host.name] = RegistryRoute(address, credentials, spec.ca if spec else None, bool(spec and spec.insecure))
    return found


@dataclass(frozen=True)
class Pushed:
    name: str  # the image's own repo:tag
    image_id: str
    remote: str  # R/REPO (no tag)
    digest: str  # manifest digest in the registry
    note: str = ""


def remote_repository(route: RegistryRoute, name: str) -> tuple[str, str]:
    """``lab/app:1`` -> (``R/lab/app``, ``1``)."""
    repository, tag = without_registry(name)  # the image's own registry part is replaced by R
    return f"{route.address.host}/{repository}", tag


def push_images(source: Host, images: Sequence[tuple[str, str]], route: RegistryRoute, reporter: Reporter, engines: EnginePool) -> list[Pushed]:
    """Push ``(name, image ID)`` pairs from ``source``'s engine; the temporary names are gone again afterwards."""
    pushed = []
    with engines.get(source).without_timeout() as engine:
        for name, image_id in images:
            remote, tag = remote_repository(route, name)
            temporary = f"{remote}:{tag}"
            before = engine.inspect_image(temporary)
            index = _index_there(route, remote, tag)
            engine.tag(image_id, temporary)
            try:
                digest = engine.push(remote, tag, route.auth_config(), lambda done: reporter.advance(source.name, done))
            finally:
                _restore(engine, temporary, before.id if before is not None else None)
            note = _put_index_back(route, remote, tag, index, digest) if index is not None else ""
            pushed.append(Pushed(name, image_id, remote, digest, note))
    return pushed


def _index_there(route: RegistryRoute, remote: str, tag: str) -> Manifest | None:
    """The multi-platform index the registry holds under ``remote:tag`` now, if that is what it holds."""
    try:
        with route.client() as client:
            found = client.manifest(remote.split("/", 1)[1], tag)
    except ShipperError:  # nothing there (or not readable): nothing to keep
        return None
    return found if found.is_index else None


def _put_index_back(route: RegistryRoute, remote: str, tag: str, index: Manifest, pushed: str) -> str:
    """An engine in the containerd store that holds only some platforms of a multi-platform image pushes the
    one it has in the index's place ("manifestPushedInsteadOfIndex"): the registry would lose the others under
    that tag. When what went up is one of the index's own platforms, the index is put back; the platform's
    manifest stays in the registry by digest, which is how the targets pull it."""
    if pushed == index.digest or pushed not in {d.digest for d in index.manifests}:
        return ""
    with route.client() as client:
        client.put_manifest(remote.split("/", 1)[1], tag, index)
    return f"{remote}:{tag} still names the multi-platform index (the source held one platform of it, and pushed that)"


def _restore(engine: Engine, name: str, previous_id: str | None) -> None:
    """Put ``name`` back as it was before shipper borrowed it."""
    if previous_id is None:
        engine.untag(name)
    else:
        engine.tag(previous_id, name)


def pull_everywhere(
    targets: Sequence[Host], pushed: Sequence[Pushed], route: RegistryRoute, reporter: Reporter, engines: EnginePool
) -> Delivery:  # fmt: skip
    """Each target pulls every pushed image by digest, in parallel across targets; a target behind a site cache
    pulls once its cache is filled (``_SiteGates``). Interrupted, the fillings stop at once and no pull starts."""
    delivery = Delivery("registry", source_read="push")
    first, then = _warming_order(targets, route)
    stop = cache_fill.Stop()

    def pull(host: Host) -> int:
        try:
            cache = gates.cache_for(host)
            if stop.event.is_set():
                raise ShipperError(f"{host.name} did not pull: shipper is ending")
            return _pull(host, pushed, route, cache, reporter, engines, delivery)
        finally:
            gates.pulled(host)

    with worker_pool(16, "cache-fill") as fills:
        try:  # from the first filling's start: an interruption at any point stops them all
            gates = _SiteGates(start_fills(fills, targets, pushed, route, stop), first, route, delivery)
            # The first of each site is started before the rest of any site: with --forks smaller than the fleet,
            # a host waiting for its site's first never holds the place that first needs.
            outcomes = for_each_host([*first, *then], pull)
        except BaseException:
            stop()
            raise
    for outcome in outcomes:
        delivery.sent[outcome.host.name] = outcome.value or 0
        delivery.errors[outcome.host.name] = outcome.error
    return delivery


class _SiteGates:
    """When each target may pull, and from where: as soon as its own site's cache is filled (a slow or silent cache
    holds back its site only); from the central registry at once when the cache did not answer the filling (its
    engines would wait on it again before they fell back); the first of its site before the rest where the cache
    could not be filled ahead (the cold cache fetches a blob once more per pull that asks while it is on its way)."""

    def __init__(self, filling: Mapping[str, Future[cache_fill.Filled]], first: Sequence[Host], route: RegistryRoute, delivery: Delivery) -> None:
        self.filling, self.route, self.delivery = filling, route, delivery
        self.first = {host.name for host in first}
        self.firsts_done = {address: threading.Event() for address in filling}

    def cache_for(self, host: Host) -> RegistryRoute | None:
        """``host``'s site cache to pull from (None: the central registry), once it may; notes how the fill went."""
        cache = self.route.mirrors.get(host.name)
        if cache is None or str(cache.address) not in self.filling:
            return cache
        how = self.filling[str(cache.address)].result()
        if how.unreachable:
            self.delivery.target_notes[host.name] = f"its site cache {cache.address} did not answer ({how.error}): pulled from {self.route.address}"
            return None
        said = (f"filling it ahead failed ({how.error}): one host of its site pulled first" if how.error else
                f"filled from {self.route.address} ahead of its site: {how.blobs} blobs, {how.bytes / 1e6:.0f} MB in {how.seconds:.1f} s")  # fmt: skip
        self.delivery.target_notes[host.name] = f"pulled from its site cache {cache.address} ({said})"
        if how.error and host.name not in self.first:
            self.firsts_done[str(cache.address)].wait()
        return cache

    def pulled(self, host: Host) -> None:
        cache = self.route.mirrors.get(host.name)
        if cache is not None and host.name in self.first and str(cache.address) in self.firsts_done:
            self.firsts_done[str(cache.address)].set()


def _pull(
    host: Host, pushed: Sequence[Pushed], route: RegistryRoute, cache: RegistryRoute | None, reporter: Reporter, engines: EnginePool,
    delivery: Delivery,
) -> int:  # fmt: skip
    """``host`` pulls every pushed image by digest, from ``cache`` first where it has one (else, or when that
    fails, from the central registry): the bytes it pulled."""
    total = 0
    with engines.get(host).without_timeout() as engine:
        for image in pushed:

            def pull_from(where: RegistryRoute) -> int:
                remote = f"{where.address.host}/{image.remote.split('/', 1)[1]}"
                reference = f"{remote}@{image.digest}"
                had_reference = engine.inspect_image(reference) is not None
                got = engine.pull(remote, image.digest, where.auth_config(), lambda done: reporter.advance(host.name, total + done))
                arrived = engine.inspect_image(reference)
                if arrived is not None:  # in the containerd store its ID is the manifest's digest, not the source's
                    delivery.local_ids.setdefault(host.name, {})[image.image_id] = arrived.id
                if not had_reference:
                    delivery.untag_after.setdefault(host.name, []).append(reference)
                return got

            if cache is not None:  # the site's cache first: it fetches from the central registry once per site
                try:
                    total += pull_from(cache)
                    delivery.target_notes.setdefault(host.name, f"pulled from its site cache {cache.address}")
                    continue
                except ShipperError as exc:
                    delivery.target_notes[host.name] = f"its site cache {cache.address} failed ({exc.message[:160]}): pulled from {route.address}"
            total += pull_from(route)
    return total


def start_fills(
    pool: ThreadPoolExecutor, targets: Sequence[Host], pushed: Sequence[Pushed], route: RegistryRoute, stop: cache_fill.Stop
) -> dict[str, Future[cache_fill.Filled]]:  # fmt: skip
    """Start filling every site cache some target is behind, all at once, before any of its targets pulls
    (cache_fill.py): cache address -> how it will have gone. ``stop()`` ends them all at once."""
    caches = {str(c.address): c for c in (route.mirrors.get(h.name) for h in targets) if c is not None}
    images = [(p.remote.split("/", 1)[1], p.digest) for p in pushed]

    def fill_one(cache: RegistryRoute) -> cache_fill.Filled:
        try:
            with cache.client(timeout=FILL_TIMEOUT) as client:
                client.retries = FILL_RETRIES
                return cache_fill.fill(stop.watch(client), images, sleep=stop.sleep)
        except ShipperError as exc:  # a client that cannot even start (its CA file)
            return cache_fill.Filled(0, 0, 0.0, exc.message[:200])

    if not images:
        return {}
    return {address: pool.submit(fill_one, cache) for address, cache in caches.items()}


def _warming_order(targets: Sequence[Host], route: RegistryRoute, warm: AbstractSet[str] = frozenset()) -> tuple[list[Host], list[Host]]:
    """Who pulls first: one target per site cache that is not ``warm`` already (the caches fill at once, each from
    the central registry), every target of a warm one, and every target without one; then the rest of each site,
    from a warm cache. Distribution's proxy fetches a blob that is still on its way in once more for each pull that
    asks for it meanwhile, so a site pulling all at once from a cold cache would cost the central registry's uplink
    one copy per host."""
    first: list[Host] = []
    then: list[Host] = []
    warming: set[str] = set()
    for host in targets:
        cache = route.mirrors.get(host.name)
        if cache is None or str(cache.address) in warm or str(cache.address) not in warming:
            first.append(host)
            if cache is not None:
                warming.add(str(cache.address))
        else:
            then.append(host)
    return first, then


def registry_failure(source: Host, error: ShipperError) -> ShipperError:
    return ShipperError(f"pushing from {source.name} failed: {error.message}", hint=error.hint)
