"""YAML files read safely, keeping the line of every mapping and key.

Errors in user files must name the file and the line, and PyYAML's
``safe_load`` throws that away. This loader is ``SafeLoader`` plus two things:
mappings come back as ``LineDict`` (a dict that remembers where it and each of
its keys stood) and a key given twice in one mapping is an error instead of
silently keeping the last value.

Ansible's two tags are read as Ansible reads them: ``!unsafe`` gives an
``Unsafe`` string (a plain string that is never rendered as a template) and
``!vault`` an opaque ``Vaulted`` value (shipper does not decrypt Ansible Vault;
whatever needs its clear text refuses it by name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shipper.errors import Origin, ShipperError


class YAMLFileError(ShipperError):
    """A YAML file could not be read or parsed."""


class LineDict(dict[Any, Any]):
    """A mapping from a YAML file, with the file and lines it came from."""

    path: str = "<string>"
    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}

    def origin(self, key: Any = None) -> Origin:
        """Where ``key`` (or, without a key, this mapping) stands."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        return Origin(self.path, line)


class Unsafe(str):
    """A string the inventory marked ``!unsafe``: used as it is, never rendered as a template."""

    __slots__ = ()


@dataclass(frozen=True)
class Vaulted:
    """A value encrypted with Ansible Vault (``!vault``): carried along, never read."""

    ciphertext: str

    def __str__(self) -> str:
        # A template that uses it fails here, rather than putting a placeholder where a secret was meant.
        raise ValueError("a value encrypted with Ansible Vault: shipper does not decrypt vault; give it in clear where shipper must use it")

    def __repr__(self) -> str:
        return "Vaulted(<ciphertext>)"


class _LineLoader(yaml.SafeLoader):
    path = "<string>"


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict()
    mapping.path = loader.path
    mapping.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise YAMLFileError(f"{Origin(loader.path, line)}: a mapping key must be a plain value") from None
        if key in mapping:
            raise YAMLFileError(
                f"{Origin(loader.path, line)}: key {key!r} is given twice "
                f"(first at line {mapping.key_lines[key]})",
                hint="keep one of them; YAML would silently use the last",
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


def mark_unsafe(value: Any) -> Any:
    """``value`` with every string in it an ``Unsafe`` one (mappings keep their lines: marked in place)."""
    if isinstance(value, str):
        return Unsafe(value)
    if isinstance(value, list):
        return [mark_unsafe(v) for v in value]
    if isinstance(value, dict):
        for key in value:
            value[key] = mark_unsafe(value[key])
    return value


def _construct_unsafe(loader: _LineLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return mark_unsafe(loader.construct_sequence(node, deep=True))
    return mark_unsafe(_construct_mapping(loader, node))  # type: ignore[arg-type]


def _construct_vault(loader: _LineLoader, node: yaml.Node) -> Vaulted:
    if not isinstance(node, yaml.ScalarNode):
        raise YAMLFileError(f"{Origin(loader.path, node.start_mark.line + 1)}: !vault must tag a string (the ciphertext)")
    return Vaulted(str(loader.construct_scalar(node)))


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor("!unsafe", _construct_unsafe)
_LineLoader.add_constructor("!vault", _construct_vault)
_LineLoader.add_constructor("!vault-encrypted", _construct_vault)


def load_text(text: str, path: str = "<string>") -> Any:
    """Parse YAML ``text``; ``path`` is only used in messages."""
    loader = _LineLoader(text)
    loader.path = path
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = Origin(path, mark.line + 1 if mark else None)
        raise YAMLFileError(f"{where}: not valid YAML: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise YAMLFileError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """Read and parse one YAML file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YAMLFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise YAMLFileError(f"{path}: not UTF-8 text") from None
    return load_text(text, str(path))
