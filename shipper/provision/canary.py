"""Proof that the registry works for the engines: a tiny image pushed from one, pulled on another, then taken away."""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from typing import Sequence

from shipper.engine import connect
from shipper.errors import RegistryError, ShipperError
from shipper.inventory.model import Host
from shipper.provision.container import registry_client
from shipper.provision.layout import UpRequest
from shipper.registry import Credentials


def canary_archive(token: str) -> bytes:
    """A tiny image as a docker-save tar: one layer holding one file (``token``), made here."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        data = f"shipper registry canary {token}\n".encode()
        info = tarfile.TarInfo("canary")
        info.size, info.mtime = len(data), 0
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": ["canary/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, blob in (("canary/layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return out.getvalue()


def canary(hosts: Sequence[Host], request: UpRequest, ca: bytes, user: str, password: str) -> str:
    """Push a canary from the first engine, pull it on the last; everything taken away again."""
    source, target = hosts[0], hosts[-1]
    token = secrets.token_hex(6)
    repository = f"{request.registry_address}/shipper-canary"
    auth = {"username": user, "password": password, "serveraddress": request.registry_address}
    with connect(source, timeout=None) as pusher, connect(target, timeout=None) as puller:
        image_id = next(iter(pusher.load([canary_archive(token)])), "")
        pusher.tag(image_id, f"{repository}:{token}")
        try:
            digest = pusher.push(repository, token, auth)
            puller.pull(repository, digest, auth)
            arrived = puller.inspect_image(f"{repository}@{digest}")
            if arrived is None or arrived.id != image_id:
                raise RegistryError(f"the canary pulled on {target.name} is not the one pushed from {source.name}")
        finally:
            for engine in {id(pusher): pusher, id(puller): puller}.values():
                try:
                    engine.remove_image(image_id)
                except ShipperError:
                    pass  # best effort: the canary is a few hundred bytes
        with registry_client(request, ca, Credentials(user, password)) as client:
            client.delete_manifest("shipper-canary", digest)
    return f"pushed from {source.name}, pulled on {target.name}"
