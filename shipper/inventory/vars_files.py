"""``group_vars/`` and ``host_vars/`` beside an inventory, found as Ansible's ``host_group_vars`` finds them.

For ``NAME`` the first of ``NAME`` (a directory or a file without extension),
``NAME.yml``, ``NAME.yaml``, ``NAME.json`` that exists is used, and only
that one: a ``web/`` directory hides ``web.yml`` beside it. A directory is read
in name order, nested directories (without an extension) included; hidden
files, backups (``~``) and other extensions are skipped; files without an
extension are read. Each file must be a mapping; empty files add nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shipper.errors import InventoryError
from shipper.yamlfile import LineDict, YAMLFileError, load_file

EXTENSIONS = (".yml", ".yaml", ".json")
MAX_FILES = 10_000  # files under one NAME/ directory


def vars_layers(base: Path, kind: str, name: str) -> list[tuple[LineDict, str]]:
    """The variable files for ``name`` under ``base/kind`` (``group_vars`` or ``host_vars``), parsed, in order."""
    if name.startswith("/"):
        return []  # Ansible skips such names ('chroot' hosts)
    directory = base / kind
    if not directory.is_dir():
        return []
    layers = []
    for path in _find(str(directory), name):
        data = _load(path)
        if data is None or data == {}:
            continue
        if not isinstance(data, LineDict):
            raise InventoryError(f"{path}: variables must be a mapping of names to values, not {type(data).__name__}")
        layers.append((data, str(Path(kind) / Path(path).relative_to(directory))))
    return layers


def _find(directory: str, name: str) -> tuple[str, ...]:
    base = Path(directory) / name
    for suffix in ("", *EXTENSIONS):
        candidate = Path(f"{base}{suffix}")
        if candidate.is_dir():
            return tuple(str(p) for p in _walk(candidate))
        if candidate.is_file():
            return (str(candidate),)
    return ()


def _walk(directory: Path, seen: set[Path] | None = None) -> list[Path]:
    seen = set() if seen is None else seen
    real = directory.resolve()
    if real in seen:  # a symbolic link back up the tree: read once, never loop
        return []
    seen.add(real)
    found: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_walk(entry, seen))
        elif entry.is_file() and (not entry.suffix or entry.suffix in EXTENSIONS):
            found.append(entry)
        if len(found) > MAX_FILES or len(seen) > MAX_FILES:
            raise InventoryError(f"{directory} holds more than {MAX_FILES} variable files or directories")
    return found


def _load(path: str) -> Any:
    try:
        return load_file(Path(path))
    except YAMLFileError as exc:
        raise InventoryError(exc.message, hint=exc.hint) from None

