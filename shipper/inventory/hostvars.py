"""The variables shipper itself reads from the inventory, and their Ansible aliases.

Keys under ``shipper_`` are shipper's alone and checked strictly. ``ssh_*`` and
``docker_*`` keys are checked where they come close to one of shipper's own
settings: a misspelt ``ssh_prot`` would otherwise be silently ignored and the
host dialled on port 22; other variables (``docker_users``, as Docker roles
name theirs) are free, and so are ``ansible_*`` keys shipper does not know, so
an Ansible inventory can be used unchanged.
"""

from __future__ import annotations

import difflib
import shlex
from typing import Any
from collections.abc import Callable, Mapping

from shipper.errors import InventoryError
from shipper.inventory.graph import Var
from shipper.yamlfile import Vaulted

RESERVED_PREFIX = "shipper_"
CHECKED_PREFIXES = ("ssh_", "docker_")
NEAR_MISS = 0.8  # difflib's ratio from which an unknown ssh_/docker_ key is taken for a misspelt setting

# canonical key -> the Ansible names that mean the same thing, in Ansible's order: where a host's
# variables hold several, the last one wins whatever level each came from (ansible_ssh_user over
# ansible_user, as Ansible's ssh connection decides). shipper's own name beats them at its level and
# below; an Ansible name written at a more specific level (the host over its group) beats it.
ALIASES: dict[str, tuple[str, ...]] = {
    "ssh_host": ("ansible_host", "ansible_ssh_host"),
    "ssh_port": ("ansible_port", "ansible_ssh_port"),
    "ssh_user": ("ansible_user", "ansible_ssh_user"),
    "ssh_key": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "ssh_common_args": ("ansible_ssh_common_args",),
    "ssh_extra_args": ("ansible_ssh_extra_args",),
}


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)) or value is None or isinstance(value, bool):
        raise ValueError("must be a string")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _port(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a port number")
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a port number, not {value!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"must be between 1 and 65535, not {port}")
    return port


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("yes", "true", "1", "on"):
        return True
    if text in ("no", "false", "0", "off"):
        return False
    raise ValueError(f"must be true or false, not {value!r}")


def _host_key_policy(value: Any) -> str:
    # YAML 1.1 reads an unquoted yes/no as a boolean.
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value).strip().lower()
    if text not in ("yes", "accept-new", "no"):
        raise ValueError(f"must be yes, accept-new or no, not {value!r}")
    return text


MAX_SSH_ARGS = 8192  # characters of ssh arguments an inventory may give a host


def _ssh_args(value: Any) -> tuple[str, ...]:
    """ssh's command-line arguments as Ansible passes them (a shell-quoted string)."""
    text = _text(value)
    if len(text) > MAX_SSH_ARGS:
        raise ValueError(f"must be at most {MAX_SSH_ARGS} characters of ssh arguments")
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ValueError(f"must be ssh arguments as a shell reads them ({exc})") from None


def _seconds(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number of seconds, not {value!r}") from None
    if seconds <= 0:
        raise ValueError("must be more than 0 seconds")
    return seconds


# Every key shipper reads, with the function that checks and converts its value.
KNOWN: dict[str, Callable[[Any], Any]] = {
    "ssh_host": _text,
    "ssh_port": _port,
    "ssh_user": _text,
    "ssh_key": _text,
    "ssh_config_file": _text,
    "ssh_known_hosts_file": _text,
    "ssh_strict_host_key_checking": _host_key_policy,
    "ssh_connect_timeout": _seconds,
    "ssh_common_args": _ssh_args,  # read for a bastion: -o ProxyJump=…, -o ProxyCommand=…, -J …
    "ssh_extra_args": _ssh_args,
    "docker_host": _text,
    "docker_cert_path": _text,
    "docker_tls_ca": _text,
    "docker_tls_cert": _text,
    "docker_tls_key": _text,
    "docker_tls_verify": _bool,
    "ansible_connection": _text,  # "local": the engine of this machine, not one behind SSH
}

_ALIAS_OF = {alias: key for key, aliases in ALIASES.items() for alias in aliases}


def settings(variables: Mapping[str, Var], owner: str) -> dict[str, Any]:
    """shipper's settings (canonical names, checked values) from a host's effective variables.

    Every key is looked at: ``shipper_*`` keys and near misses of shipper's
    settings are errors naming the file and line. Values are checked only for
    the names that win, so a bad value hidden by a host's own is no error.
    """
    for key, var in variables.items():
        canonical = _ALIAS_OF.get(key, key)
        if canonical not in KNOWN and (canonical.startswith(RESERVED_PREFIX) or _near_miss(canonical)):
            raise InventoryError(f"unknown setting {key!r} for {owner}", hint=_suggest(key), origin=var.origin)
    result: dict[str, Any] = {}
    for canonical, convert in KNOWN.items():
        ansible = [name for name in ALIASES.get(canonical, ()) if name in variables]
        name = ansible[-1] if ansible else canonical
        if canonical in variables and (not ansible or variables[canonical].rank >= variables[name].rank):
            name = canonical  # shipper's own name, unless an Ansible name was written at a more specific level
        if name not in variables:
            continue
        var = variables[name]
        if isinstance(var.value, Vaulted):
            raise InventoryError(
                f"{name} of {owner} is encrypted with Ansible Vault ({var.describe()}); shipper does not decrypt vault",
                hint="give shipper this value in clear (a host_vars file readable only by you), or leave it to Ansible",
                origin=var.origin,
            )
        try:
            result[canonical] = convert(var.value)
        except ValueError as exc:
            raise InventoryError(f"{name} of {owner} {exc}", origin=var.origin) from None
    return result


def _near_miss(key: str) -> bool:
    return key.startswith(CHECKED_PREFIXES) and bool(difflib.get_close_matches(key, list(KNOWN), n=1, cutoff=NEAR_MISS))


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, list(KNOWN) + list(_ALIAS_OF), n=1, cutoff=0.6)
    known = ", ".join(sorted(KNOWN))
    if close:
        return f"did you mean {close[0]!r}? shipper's settings are: {known}"
    return f"shipper's settings are: {known}; other variables must not start with shipper_"
