"""Which reader takes an inventory source, as Ansible decides it.

A source is a host list (``'a,b,'``), a file or a directory. A directory is
read entry by entry in name order (subdirectories too), skipping hidden
entries, ``group_vars``, ``host_vars`` and the extensions Ansible skips; its
own ``group_vars/`` and ``host_vars/`` apply. A file is, in Ansible's order of
plugins:

- executable: an inventory script;
- ``.yml``, ``.yaml``, ``.json`` or no extension, holding a mapping: YAML
  (or ``ansible-inventory --list`` JSON, recognised by its ``_meta`` or its
  lists of hosts). An Ansible plugin configuration (``plugin: aws_ec2``) is
  refused with the command that turns it into JSON shipper reads;
- anything else: INI (``.toml`` is refused).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper.errors import InventoryError, Origin
from shipper.inventory.graph import Graph
from shipper.inventory.read_hostlist import is_host_list, read_host_list
from shipper.inventory.read_ini import read_ini
from shipper.inventory.read_script import is_list_json, read_list_json, read_script
from shipper.inventory.read_yaml import looks_like_plugin_config, read_yaml
from shipper.yamlfile import LineDict, YAMLFileError, load_text

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS and its names that are never inventory sources.
_IGNORED = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$|(\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$")
MAX_FILE = 64 * 1024 * 1024  # bytes of one inventory file
MAX_ENTRIES = 10_000  # files under one inventory directory


@dataclass
class Sources:
    """What reading the sources gave besides the graph."""

    bases: list[Path] = field(default_factory=list)  # where group_vars/ and host_vars/ are looked for
    files: list[str] = field(default_factory=list)  # every file read, in order
    yaml_documents: list[LineDict] = field(default_factory=list)  # for shipper's own registries: section


def read_source(spec: str, graph: Graph, sources: Sources) -> None:
    """Read one ``-i`` value into ``graph``."""
    path = Path(spec).expanduser()
    if not path.exists() and is_host_list(spec):
        paths = [Path(p.strip()).expanduser() for p in spec.split(",") if p.strip()]
        if paths and all(p.exists() for p in paths):  # ANSIBLE_INVENTORY and ansible.cfg list sources so
            for one in paths:
                read_source(str(one), graph, sources)
        else:
            read_host_list(spec, graph)
        return
    if path.is_dir():
        sources.bases.append(path)
        _read_directory(path, graph, sources, [0])
    elif path.is_file():
        sources.bases.append(path.parent)
        _read_file(path, graph, sources)
    else:
        raise InventoryError(
            f"inventory {spec} does not exist",
            hint="pass -i FILE, DIRECTORY or 'host1,host2,'; set SHIPPER_INVENTORY or ANSIBLE_INVENTORY; or create inventory/hosts.yml",
        )


def _read_directory(directory: Path, graph: Graph, sources: Sources, count: list[int]) -> None:
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if _IGNORED.search(entry.name):
            continue
        count[0] += 1
        if count[0] > MAX_ENTRIES:
            raise InventoryError(f"inventory directory {directory} holds more than {MAX_ENTRIES} entries")
        if entry.is_dir():
            _read_directory(entry, graph, sources, count)
        elif entry.is_file():
            _read_file(entry, graph, sources)


def _read_file(path: Path, graph: Graph, sources: Sources) -> None:
    sources.files.append(str(path))
    if os.access(path, os.X_OK):
        read_script(path, graph)
        return
    suffix = path.suffix
    if suffix == ".toml":
        raise InventoryError(f"{path}: TOML inventories are not read by shipper", hint=f"convert it: ansible-inventory -i {path} --list > {path.with_suffix('.json')}")
    text = _text(path)
    if suffix in YAML_EXTENSIONS or not suffix:
        data = _yaml(text, path, strict=bool(suffix))
        if isinstance(data, LineDict) and data:
            _read_mapping(data, path, graph, sources)
            return
        if suffix:
            raise InventoryError(
                f"{path}: a YAML inventory must be a mapping of groups, such as 'all:'" if data is not None else f"{path}: the inventory is empty",
                hint="start it with 'all:' and list hosts under 'hosts:'",
            )  # fmt: skip
    read_ini(text, str(path), graph)


def _read_mapping(data: LineDict, path: Path, graph: Graph, sources: Sources) -> None:
    if looks_like_plugin_config(data):
        raise InventoryError(
            f"{path} configures the Ansible inventory plugin {str(data.get('plugin'))[:60]!r}; shipper does not run Ansible's plugins",
            hint=f"let Ansible run it once and give shipper the result: ansible-inventory -i {path} --list > fleet.json; shipper ... -i fleet.json",
        )
    if "_meta" in data or (path.suffix != ".yml" and path.suffix != ".yaml" and is_list_json(data)):
        read_list_json(data, graph, Origin(str(path), None))
        return
    sources.yaml_documents.append(data)
    read_yaml(data, graph)


def _text(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE:
            raise InventoryError(f"{path} is larger than {MAX_FILE // 2**20} MiB; shipper reads no inventory file that large")
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InventoryError(f"cannot read inventory {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{path}: not UTF-8 text") from None


def _yaml(text: str, path: Path, strict: bool) -> Any:
    """The parsed YAML; for a file without extension, None where it is no YAML (it is then INI)."""
    try:
        return load_text(text, str(path))
    except YAMLFileError as exc:
        if strict or _looks_like_yaml(text):
            raise InventoryError(exc.message, hint=exc.hint) from None
        return None


def _looks_like_yaml(text: str) -> bool:
    # An INI file is rarely valid YAML; a YAML inventory's first content line is a "name:" key.
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", ";")):
            return bool(re.fullmatch(r"[A-Za-z0-9_.-]+:(\s.*)?", stripped)) and not stripped.startswith("[")
    return False
