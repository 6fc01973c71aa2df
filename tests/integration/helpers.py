"""Looking at the far side: what a lab engine really holds."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from shipper.archive.layers import chain_ids
from shipper.lab import Lab


def image_id_of(lab: Lab, host: str, reference: str) -> str | None:
    """The ID ``reference`` points at on ``host``'s engine, or None."""
    result = lab.docker(host, "image", "inspect", "-f", "{{.Id}}", reference, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def tags_of(lab: Lab, host: str, image_id: str) -> list[str]:
    result = lab.docker(host, "image", "inspect", "-f", "{{join .RepoTags \",\"}}", image_id, check=False)
    return sorted(t for t in result.stdout.strip().split(",") if t) if result.returncode == 0 else []


def remove(lab: Lab, hosts: str, *references: str) -> None:
    """Make sure none of ``references`` (tags or IDs) is on any of ``hosts``."""
    for host in hosts.split(","):
        for reference in references:
            lab.docker(host, "image", "rm", "-f", reference, check=False)


def untagged_ids(lab: Lab, host: str) -> set[str]:
    result = lab.docker(host, "images", "-q", "--no-trunc", "--filter", "dangling=true")
    return set(result.stdout.split())


def carrier_ids(lab: Lab, host: str) -> set[str]:
    """The carriers a cut move left on ``host`` (untagged, labelled: archive/receiver.py)."""
    result = lab.docker(host, "images", "-q", "--no-trunc", "--filter", "label=io.shipper.carrier")
    return set(result.stdout.split())


def write_inventory(path: Path, hosts: dict[str, dict[str, str]], **all_vars: str) -> str:
    """An inventory file at ``path`` with ``hosts`` (name -> variables); its path, for ``-i``."""
    data = {"all": {"vars": dict(all_vars), "hosts": {name: dict(variables) or None for name, variables in hosts.items()}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def layers_of(lab: Lab, host: str, reference: str) -> list[str]:
    return json.loads(lab.docker(host, "image", "inspect", "-f", "{{json .RootFS.Layers}}", reference).stdout)


def flip_byte(path: Path) -> None:
    """Flip one byte of a file (again to flip it back): a layer changed on disk behind the engine's back."""
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0x01]))


def file_in_store(lab: Lab, host: str, reference: str, layer: int, name: str) -> Path:
    """File ``name`` of the image's ``layer``-th layer as the host's overlay2 store keeps it (to change behind the engine's back)."""
    chain = chain_ids(layers_of(lab, host, reference))[layer].split(":")[1]
    data_root = lab.root / host / "data"
    cache_id = (data_root / "image" / "overlay2" / "layerdb" / "sha256" / chain / "cache-id").read_text().strip()
    return data_root / "overlay2" / cache_id / "diff" / name
