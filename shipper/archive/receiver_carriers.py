"""The receiver's carriers (receiver.py): untagged images that hold a cut stream's layers, one more layer each,
loaded one after another while the stream goes on; and a member of the stream as kept for them and for the final
load. Standard library only: sent to the target with receiver.py (see ``RECEIVER_MODULES`` there)."""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from shipper.archive.layers import chain_ids
from shipper.archive.receiver_loads import CHUNK, EngineImport, Load, load_file, start_import
from shipper.archive.tarheader import BLOCK, pad, ustar_header

CARRIER_LABEL = "io.shipper.carrier"
CARRIER_LAYER = "layer.tar"  # the new layer's name inside a carrier's archive


def carrier_config(os_name: str, architecture: str, diff_ids: Sequence[str]) -> bytes:
    """A carrier's config: the image's layers up to one of them, nothing else. Its digest is the carrier's ID,
    the same on both ends (shipper computes it too, to find and remove carriers)."""
    document = {
        "architecture": architecture, "os": os_name, "config": {"Labels": {CARRIER_LABEL: "1"}},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
    }  # fmt: skip
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def carrier_ids(images: Sequence[dict]) -> List[str]:
    """Every carrier ID a move of ``images`` may have made: one per prefix of each image's layers."""
    found = []
    for image in images:
        layers = list(image["layers"])
        for end in range(1, len(layers) + 1):
            found.append("sha256:" + hashlib.sha256(carrier_config(image["os"], image["architecture"], layers[:end])).hexdigest())
    return list(dict.fromkeys(found))


class Member:
    """One member of the incoming stream as kept for the final load: its header blocks and content. A spooled
    member's file starts with a tar header of its own (``layer.tar``), so that the file is the start of a carrier's
    archive: a carrier is loaded with ``docker load -i FILE`` and its bytes are not read again here."""

    def __init__(self, headers: bytes, name: str, size: int) -> None:
        self.headers, self.name, self.size = headers, name, size
        self.data: Optional[bytes] = None  # small members
        self.path: Optional[str] = None  # spooled members: one tar header block (``layer.tar``), then the content
        self.digest = ""
        self.streamed: Optional["Load"] = None  # its carrier's load, fed while the layer arrived

    def chunks(self) -> Iterator[bytes]:
        yield self.headers
        if self.data is not None:
            yield self.data
        elif self.path is not None:
            with open(self.path, "rb") as spooled:
                spooled.seek(BLOCK)
                left = self.size
                while left:
                    chunk = spooled.read(min(CHUNK, left))
                    if not chunk:
                        raise OSError(f"{self.path} is shorter than its member")
                    left -= len(chunk)
                    yield chunk
        if pad(self.size):
            yield bytes(pad(self.size))

    def spool(self, directory: str) -> str:
        """This member as a carrier's first member (``layer.tar``): its spool file, written now if it was in memory."""
        if self.path is None:
            self.path = os.path.join(directory, f"small-{self.digest[7:]}")
            with open(self.path, "wb") as out:
                out.write(ustar_header(CARRIER_LAYER, self.size) + (self.data or b""))
        return self.path


class Carriers:
    """Loads carriers one after another in the background, each holding one new layer on the chain below it."""

    def __init__(self, images: Sequence[dict], held: Set[str], spool: str = "") -> None:
        self.images = [dict(image, chains=chain_ids(image["layers"])) for image in images]
        self.spool = spool
        self.done = [0] * len(self.images)  # per image: how many of its layers (from the base) are registered or queued
        self.registered: Set[str] = set()  # chain IDs the target holds, or will once the queued loads are done
        for image in self.images:
            for diff_id, chain in zip(image["layers"], image["chains"]):
                if diff_id not in held:
                    break
                self.registered.add(chain)
        self.arrived: Dict[str, Member] = {}  # diff ID -> its member
        self.pending: Dict[str, int] = {}  # diff ID -> carriers queued that load it
        self.jobs: "queue.Queue[Optional[Tuple[dict, int]]]" = queue.Queue()
        self.error: Optional[str] = None
        self.loaded = 0
        self.imported: List[str] = []  # the carriers made by import (IDs the engine chose: see EngineImport)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def expects(self, digest: str) -> bool:
        return any(digest in image["layers"] for image in self.images)

    def only_once(self, digest: str) -> bool:
        """Whether layer ``digest`` carries one chain only (of one image, once): its streamed load is the only
        carrier it will need, and it need not be spooled as well."""
        return sum(image["layers"].count(digest) for image in self.images) == 1

    def next_on_a_chain(self, digest: str) -> bool:
        """Whether layer ``digest``, once whole, is the next carrier of some image (every layer below it registered,
        or queued): then its carrier's load may be fed while it arrives."""
        for number, image in enumerate(self.images):
            done = self.done[number]
            if done < len(image["layers"]) and image["layers"][done] == digest and image["chains"][done] not in self.registered:
                return True
        return False

    def starts_a_chain(self, digest: str) -> bool:
        """Whether layer ``digest`` is the base of an image none of whose layers the target holds: its carrier may
        then be an import (``start_base``)."""
        return any(not self.done[n] and image["layers"][0] == digest and image["chains"][0] not in self.registered for n, image in enumerate(self.images) if image["layers"])

    def start_base(self, digest: str) -> Optional[EngineImport]:
        return start_import(CARRIER_LABEL, digest)

    def add(self, member: Member) -> bool:
        """A layer arrived whole: queue a carrier for each layer it lets onto its chain. Whether one is ``member``'s."""
        self.arrived[member.digest] = member
        own = False
        for number, image in enumerate(self.images):
            layers, chains, done = image["layers"], image["chains"], self.done[number]
            while done < len(layers) and (chains[done] in self.registered or layers[done] in self.arrived):
                if chains[done] not in self.registered:
                    self.registered.add(chains[done])  # loads run in order: the next carrier may rely on it
                    self.pending[layers[done]] = self.pending.get(layers[done], 0) + 1
                    own = own or layers[done] == member.digest
                    self.jobs.put((image, done))
                done += 1
            self.done[number] = done
        return own

    def carried(self, member: Member) -> bool:
        """Whether the final load may leave ``member`` out: a layer whose chain a carrier registered."""
        return member.digest in self.arrived and all(
            chain in self.registered for image in self.images for diff_id, chain in zip(image["layers"], image["chains"]) if diff_id == member.digest
        )

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if self.error is None:
                image, position = job
                try:
                    self.error = self._load_carrier(image, position)
                except OSError as exc:  # its spool file could not be finished (a full /var/tmp, say)
                    self.error = f"cannot write the carrier of layer {image['layers'][position]} under {self.spool}: {exc.strerror or exc}"
                if self.error is None:
                    self.loaded += 1
                    member = self.arrived[image["layers"][position]]
                    self.pending[member.digest] -= 1
                    if self.carried(member) and member.path is not None and not self.pending[member.digest]:
                        os.unlink(member.path)  # in the engine now: the spool holds only what is still on its way
                        member.path = None

    def _load_carrier(self, image: dict, position: int) -> Optional[str]:
        """The carrier of ``image``'s layers up to ``position``: that layer (fed to its load as it arrived, or its
        spool file), its config and manifest.json after it (the layers below are left out: the target holds their
        chain, the thin load every engine of the classic store takes)."""
        member = self.arrived[image["layers"][position]]
        config = carrier_config(image["os"], image["architecture"], image["layers"][: position + 1])
        digest = hashlib.sha256(config).hexdigest()
        # The layers below are named as the stream names them: were one gone from the engine, its load says which.
        names = ["blobs/sha256/" + d[7:] for d in image["layers"][:position]] + [CARRIER_LAYER]
        manifest = json.dumps([{"Config": f"{digest}.json", "RepoTags": None, "Layers": names}]).encode()
        trailer = b"".join(ustar_header(name, len(data)) + data + bytes(pad(len(data))) for name, data in ((f"{digest}.json", config), ("manifest.json", manifest)))
        streamed, member.streamed = member.streamed, None  # one carrier per streamed load; any other from the spool
        if isinstance(streamed, EngineImport) and position:  # the same layer higher on another chain: kept for its base
            member.streamed, streamed = streamed, None
        if isinstance(streamed, EngineImport) and streamed.alive:
            failed = streamed.finish(b"")
            if failed is None:
                self.imported.append(streamed.image_id)
            return failed
        if streamed is not None and streamed.alive:
            return streamed.finish(bytes(pad(member.size)) + trailer + bytes(2 * BLOCK))
        if member.path is None and member.data is None:  # fed to its load only, which gave up
            return (streamed.failure if streamed is not None else "") or f"the load of layer {member.digest} gave up"
        path = member.spool(self.spool)
        with open(path, "r+b") as out:
            out.truncate(BLOCK + member.size + pad(member.size))  # the same layer may carry another chain after
            out.seek(0, os.SEEK_END)
            out.write(trailer + bytes(2 * BLOCK))
        return load_file(path)

    def finish(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        for member in self.arrived.values():  # fed while arriving, and taken by no carrier (an error before it)
            if member.streamed is not None:
                member.streamed.abort()
                member.streamed = None
