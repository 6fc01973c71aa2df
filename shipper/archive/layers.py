"""Which layer a save-stream member holds, and which layers a target already has.

Standard library only, and importing nothing from shipper: like savestream.py,
this module also runs next to a source engine with the host's own ``python3``.

An engine stores a layer under its *chain ID*: the digest of that layer
together with every layer under it. A target "has" layer ``i`` of an image
only when it holds chain ``i``; only such layers may be left out of a stream
(the engine then assembles the image from its own copies).

A docker-save stream names its layers in one of three ways:

- ``<diff-hex>/layer.tar`` (shipper's own streams, see layerstore.py),
  ``blobs/sha256/<diff-hex>`` (Docker 25+ classic store) and ``<diff-hex>.tar``
  (podman): the name is the layer's digest;
- ``<v1-id>/layer.tar`` (Docker 20.10 and older): the directory is named by a
  "v1 ID" derived from the image's config, which ``docker save`` writes to
  ``<v1-id>/json`` just before ``layer.tar``. ``identify_v1`` recomputes that
  ID from the ``json`` member for each candidate chain ID, the way Docker does
  (``image/v1.CreateID``): the first that matches names the layer.
"""

from __future__ import annotations

import hashlib
import json
from typing import AbstractSet, Dict, Iterable, List, Mapping, Optional, Sequence, Set

HEX = frozenset("0123456789abcdef")
# Fields Docker sets on a v1 layer's JSON only after computing its ID (image/tarexport/save.go).
_ADDED_AFTER_ID = ("os",)


def is_hex64(text: str) -> bool:
    return len(text) == 64 and set(text) <= HEX


def chain_ids(diff_ids: Sequence[str]) -> List[str]:
    """Chain ID of each prefix of ``diff_ids`` (the layer store's keys)."""
    chains: List[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def needed_layers(images: Iterable[Sequence[str]], present_chains: AbstractSet[str]) -> Set[str]:
    """Diff IDs a target must receive: those of every layer whose chain it lacks."""
    needed: Set[str] = set()
    for diff_ids in images:
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids)):
            if chain not in present_chains:
                needed.add(diff_id)
    return needed


def _raw_fields(text: str) -> Dict[str, str]:
    """A JSON object's top-level fields as their exact source text (Go keeps them so)."""
    decoder = json.JSONDecoder()
    fields: Dict[str, str] = {}
    index = text.index("{") + 1
    while True:
        while text[index] in " \t\r\n,":
            index += 1
        if text[index] == "}":
            return fields
        key, index = decoder.raw_decode(text, index)
        while text[index] in " \t\r\n:":
            index += 1
        _, end = decoder.raw_decode(text, index)
        fields[key] = text[index:end]
        index = end


class LayerIndex:
    """The layers of the images a stream carries: recognises their members by name.

    ``images``: image ID -> its diff IDs, in order.
    """

    def __init__(self, images: Mapping[str, Sequence[str]]) -> None:
        self.diff_ids: Set[str] = {d for layers in images.values() for d in layers}
        self._chains: Dict[str, str] = {}  # chain ID -> diff ID of its top layer
        for layers in images.values():
            for diff_id, chain in zip(layers, chain_ids(layers)):
                self._chains[chain] = diff_id
        self._v1: Dict[str, str] = {}  # v1 directory -> diff ID

    def layer_of(self, name: str) -> Optional[str]:
        """The diff ID of the layer member ``name`` holds, if it is one we can tell."""
        directory, _, base = name.rpartition("/")
        if base == "layer.tar" and is_hex64(directory):
            if "sha256:" + directory in self.diff_ids:
                return "sha256:" + directory
            return self._v1.get(directory)
        if directory == "blobs/sha256" and "sha256:" + base in self.diff_ids:
            return "sha256:" + base
        if not directory and base.endswith(".tar") and "sha256:" + base[:-4] in self.diff_ids:  # podman: <diff-hex>.tar
            return "sha256:" + base[:-4]
        return None

    def identify_v1(self, directory: str, data: bytes) -> Optional[str]:
        """Learn which layer the v1 directory ``directory`` holds from its ``json`` member."""
        try:
            fields = _raw_fields(data.decode("utf-8"))
            parent = json.loads(fields.pop("parent")) if "parent" in fields else None
        except (ValueError, IndexError, UnicodeDecodeError):
            return None
        fields.pop("id", None)
        variants = [fields, {k: v for k, v in fields.items() if k not in _ADDED_AFTER_ID}]
        for chain, diff_id in self._chains.items():
            for variant in variants:
                candidate = dict(variant, layer_id=json.dumps(chain))
                if parent:
                    candidate["parent"] = json.dumps("sha256:" + str(parent))
                text = "{" + ",".join(f"{json.dumps(k)}:{candidate[k]}" for k in sorted(candidate)) + "}"
                if hashlib.sha256(text.encode()).hexdigest() == directory:
                    self._v1[directory] = diff_id
                    return diff_id
        return None
