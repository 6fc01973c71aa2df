"""Which signatures a move or a load asks for (``--verify-key``, the targets' ``trusted_keys``) and where the
signed statements are: decided from the command line and the inventory alone. Checking them (release.py) brings
the signatures' modules, which a move that asks for none never loads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from shipper.errors import InventoryError
from shipper.inventory.model import Host

DEFAULT_DIRECTORY = "releases"


@dataclass(frozen=True)
class ReleasePolicy:
    """``move --verify-key`` and the targets' ``trusted_keys``: each set of keys must verify the statements (one key
    of each set); and where the statements are."""

    key_sets: tuple[tuple[Path, ...], ...]
    directory: Path


def policy_for(targets: Sequence[Host], keys: Sequence[Path], directory: Path) -> ReleasePolicy | None:
    """The release policy of a move to ``targets``: ``keys`` (--verify-key) with each target's own trusted keys;
    None when neither asks for signatures."""
    sets = tuple(dict.fromkeys(tuple(keys) + trusted_keys(host) for host in targets))
    sets = tuple(s for s in sets if s)
    return ReleasePolicy(sets, directory) if sets else None


def trusted_keys(host: Host) -> tuple[Path, ...]:
    """The public keys what lands on ``host`` must be signed with (a bundle loaded there, a release moved there): its
    ``trusted_keys`` variable (a path or a list of them, ``~`` expanded, relative to where shipper runs, as Ansible
    reads key files); none: no signature asked."""
    value = host.vars.get("trusted_keys")
    if value is None or value == []:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        where = host.var_sources.get("trusted_keys", str(host.origin))
        raise InventoryError(f"trusted_keys of {host.name} must be a path or a list of paths (set in {where})", origin=host.origin)
    return tuple(Path(item).expanduser() for item in items)




def directory_for(given: str | None) -> Path:
    """``--releases DIR``, else ``$SHIPPER_RELEASES``, else ``releases/`` here (beside ``inventory/`` and
    ``playbooks/`` in a project). Never inside an inventory directory by default: Ansible, and shipper as
    Ansible does, read every file there as inventory."""
    return Path(given or os.environ.get("SHIPPER_RELEASES") or DEFAULT_DIRECTORY).expanduser()
