"""Turn a host's merged variables into SSH settings and an engine endpoint.

Precedence for every SSH setting: an explicit value (command line, or the
parts of an ``ssh://`` docker_host) > the inventory > ``ssh_config`` > a
default, the same order OpenSSH and Fabric use. ssh_config is read with
paramiko's parser (Host/Match blocks, tokens, Include) but nothing here
opens a connection.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from paramiko import config as paramiko_config
from paramiko.config import SSHConfig

from shipper.errors import InventoryError, Origin
from shipper.inventory.model import EngineEndpoint, SSHSettings, TLSFiles

DEFAULT_SSH_CONFIG = "~/.ssh/config"
SYSTEM_SSH_CONFIG = "/etc/ssh/ssh_config"
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
DOCKER_TLS_PORT = 2376  # the engine's registered port for TLS; 2375 is plain HTTP
LOCAL_ENGINE = "unix:///var/run/docker.sock"  # where a system dockerd listens


class _SSHConfig(SSHConfig):
    """paramiko's parser, without a password-database lookup per block that cannot match: its ``_does_match``
    asks ``getpass.getuser()`` first, for every Host block a host is not in (an empty Match list), which made
    resolving a fleet quadratic in lookups of the local user (4,656 for 48 hosts; each an NSS call where
    $USER is unset, and LDAP's where users come from there)."""

    def _does_match(self, match_list: list[Any], *args: Any) -> Any:
        if not match_list:
            return []  # what paramiko's own answer is for an empty list, without asking for the user
        if any(candidate.get("type") == "exec" for candidate in match_list):
            _lend_invoke()
        return super()._does_match(match_list, *args)  # type: ignore[misc]


def _lend_invoke() -> None:
    """paramiko runs ``Match exec`` through Invoke, which shipper imports only when a config has one (see
    ``shipper._import_paramiko_without_invoke``)."""
    if paramiko_config.invoke is None:  # type: ignore[attr-defined]  # not in paramiko's stubs
        import invoke

        paramiko_config.invoke = invoke  # type: ignore[attr-defined]


@lru_cache(maxsize=16)
def _parse_ssh_config(user_path: str, user_mtime: float, system_mtime: float) -> SSHConfig:
    # The user's file first: like OpenSSH, the first value found for a key wins.
    texts = []
    for path in (user_path, SYSTEM_SSH_CONFIG):
        if os.path.isfile(path):
            texts.append(Path(path).read_text(encoding="utf-8", errors="replace"))
    try:
        return _SSHConfig.from_text("\n".join(texts))
    except Exception as exc:  # paramiko raises several kinds for bad files
        raise InventoryError(f"cannot parse ssh_config {user_path}: {exc}") from None


def read_ssh_config(path: str | None) -> SSHConfig:
    """The ssh_config that applies: ``path`` (must exist) or ``~/.ssh/config`` (may be absent)."""
    explicit = path is not None
    user_path = os.path.expanduser(path or DEFAULT_SSH_CONFIG)
    if explicit and not os.path.isfile(user_path):
        raise InventoryError(f"ssh_config_file {user_path} does not exist")

    def mtime(p: str) -> float:
        return os.stat(p).st_mtime if os.path.isfile(p) else 0.0

    return _parse_ssh_config(user_path, mtime(user_path), mtime(SYSTEM_SSH_CONFIG))


def _lookup(config: SSHConfig, alias: str, origin: Origin | None) -> dict[str, Any]:
    """ssh_config's values for ``alias``. Its ``Match exec`` commands run here (paramiko runs them through
    invoke): as OpenSSH does, with stdin from /dev/null, so that they never read what shipper's own
    stdin holds (a password given with --password-file -); their failures are inventory errors."""
    saved = sys.stdin
    try:
        with open(os.devnull) as nothing:
            sys.stdin = nothing
            return dict(config.lookup(alias))
    except Exception as exc:  # paramiko and invoke raise several kinds
        raise InventoryError(f"ssh_config could not be read for host {alias}: {type(exc).__name__}: {str(exc).strip()[:200]}", origin=origin) from None
    finally:
        sys.stdin = saved


class _Picker:
    """Looks a setting up in explicit values, then inventory, then ssh_config, then a default."""

    def __init__(self, explicit: Mapping[str, Any], variables: Mapping[str, Any], conf: Mapping[str, Any]) -> None:
        self.explicit, self.variables, self.conf = explicit, variables, conf
        self.sources: dict[str, str] = {}

    def pick(self, key: str, conf_key: str, default: Any, convert: Callable[[Any], Any] = lambda v: v) -> Any:
        for source, values, name in (
            ("explicit", self.explicit, key),
            ("inventory", self.variables, key),
            ("ssh_config", self.conf, conf_key),
        ):
            if name in values and values[name] not in (None, ""):
                self.sources[key] = source
                return values[name] if source != "ssh_config" else convert(values[name])
        self.sources[key] = "default"
        return default


def _conf_port(value: Any) -> int:
    try:
        return int(value)
    except ValueError:
        raise InventoryError(f"ssh_config gives Port {value!r}, which is not a number") from None


def _conf_count(value: Any, key: str, low: int, high: int) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InventoryError(f"ssh_config gives {key} {str(value)[:40]!r}, which is not a whole number") from None
    if not low <= number <= high:
        raise InventoryError(f"ssh_config gives {key} {number}, outside {low}..{high}")
    return number


def _conf_policy(value: Any) -> str:
    text = str(value).lower()
    return {"ask": "yes", "off": "no", "false": "no", "true": "yes"}.get(text, text)


def _expand(paths: Any) -> tuple[str, ...]:
    items = paths.split() if isinstance(paths, str) else list(paths)
    return tuple(os.path.expanduser(str(p)) for p in items)


# What OpenSSH (9.6+) accepts as a host name on its command line: no shell metacharacters, since
# ssh_config's "Match exec" and ProxyCommand put it (%h, %n) into a shell command. Letters, digits,
# and . - _ : % [ ] (IPv6 addresses and zones); not starting with "-" (an option).
_HOSTNAME = re.compile(r"[A-Za-z0-9_.:%\[\]-]{1,253}", re.ASCII)
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}", re.ASCII)


def check_hostname(value: str, what: str, origin: Origin | None = None) -> str:
    """``value`` if it can be a host name; else InventoryError (before any ssh_config lookup runs a command)."""
    if not _HOSTNAME.fullmatch(value) or value.startswith("-"):
        raise InventoryError(
            f"{what} {value[:100]!r} is not a host name: only letters, digits and . - _ : % [ ] may appear in one",
            hint="ssh_config's Match exec and ProxyCommand would put it into a shell command; OpenSSH refuses such names too",
            origin=origin,
        )
    return value


def check_user(value: str, what: str, origin: Origin | None = None) -> str:
    if not _USER.fullmatch(value):
        raise InventoryError(
            f"{what} {value[:100]!r} is not a user name: letters, digits and . _ - @, not starting with - or @",
            hint="ssh_config's tokens (%r) would put it into a shell command", origin=origin,
        )  # fmt: skip
    return value


_OPTION = re.compile(r"\s*([A-Za-z]+)\s*(?:=|\s)\s*(.*)", re.DOTALL)


def proxy_from_args(args: Sequence[str]) -> tuple[str | None, str | None] | None:
    """(ProxyCommand, ProxyJump) that ssh's command-line arguments set: Ansible's ``ansible_ssh_common_args`` and
    ``ansible_ssh_extra_args``, where its documentation puts a bastion (``-o ProxyCommand="ssh -W %h:%p -q
    bastion"``, ``-o ProxyJump=bastion``, ``-J bastion``). None when they set neither: ssh_config decides then.
    As in ssh, the first of the two wins, a command line's over ssh_config's, and ``none`` means none."""
    options: list[tuple[str, str]] = []
    position = 0
    while position < len(args):
        arg = args[position]
        if arg in ("-o", "-J") and position + 1 < len(args):
            options.append((arg, args[position + 1]))
            position += 2
            continue
        if arg.startswith(("-o", "-J")) and len(arg) > 2:
            options.append((arg[:2], arg[2:]))
        position += 1
    for flag, value in options:
        if flag == "-J":
            return None, (None if value.lower() == "none" else value)
        found = _OPTION.fullmatch(value)
        if found is None:
            continue
        key, setting = found.group(1).lower(), found.group(2).strip()
        if key in ("proxycommand", "proxyjump"):
            chosen = None if setting.lower() == "none" or not setting else setting
            return (chosen, None) if key == "proxycommand" else (None, chosen)
    return None


def resolve_ssh(name: str, variables: Mapping[str, Any], explicit: Mapping[str, Any] | None = None, origin: Origin | None = None) -> SSHSettings:
    """SSH settings for host ``name`` from its merged (normalized) variables."""
    explicit = explicit or {}
    alias = str(explicit.get("ssh_host") or variables.get("ssh_host") or name)
    check_hostname(alias, "the SSH address of host " + name[:100] if alias != name else "host", origin)
    config_file = os.path.expanduser(variables.get("ssh_config_file") or DEFAULT_SSH_CONFIG)
    conf = _lookup(read_ssh_config(variables.get("ssh_config_file")), alias, origin)
    picker = _Picker(explicit, variables, conf)
    # paramiko answers hostname=alias when no Host block renames it.
    hostname = conf.get("hostname") or alias
    if hostname != alias:
        picker.sources["hostname"] = "ssh_config"
    else:
        picker.sources["hostname"] = "explicit" if "ssh_host" in explicit else "inventory" if alias != name else "default"
    port = picker.pick("ssh_port", "port", 22, _conf_port)
    user = picker.pick("ssh_user", "user", getpass.getuser())
    check_user(str(user), f"the SSH user of host {name[:100]}", origin)
    keys = picker.pick("ssh_key", "identityfile", (), _expand)
    known = picker.pick("ssh_known_hosts_file", "userknownhostsfile", (DEFAULT_KNOWN_HOSTS,), _expand)
    policy = picker.pick("ssh_strict_host_key_checking", "stricthostkeychecking", "yes", _conf_policy)
    timeout = picker.pick("ssh_connect_timeout", "connecttimeout", 10.0, float)
    global_known = _expand(conf.get("globalknownhostsfile", SYSTEM_KNOWN_HOSTS))
    alive_interval = _conf_count(conf.get("serveraliveinterval", 15), "ServerAliveInterval", 0, 86400)
    alive_count = _conf_count(conf.get("serveralivecountmax", 4), "ServerAliveCountMax", 1, 1000)
    from_args = proxy_from_args(tuple(variables.get("ssh_common_args", ())) + tuple(variables.get("ssh_extra_args", ())))
    proxy_command, proxy_jump = from_args if from_args is not None else (conf.get("proxycommand"), conf.get("proxyjump"))
    picker.sources["proxy"] = "inventory" if from_args is not None else "ssh_config" if proxy_command or proxy_jump else "default"
    return SSHSettings(
        alias=alias,
        hostname=str(hostname),
        port=int(port),
        user=str(user),
        identity_files=_expand(keys),
        known_hosts_files=_expand(known) + global_known,  # the default ~/.ssh/known_hosts too: users have no UserKnownHostsFile line
        strict_host_key_checking=policy if policy in ("yes", "accept-new", "no") else "yes",
        proxy_command=proxy_command,
        proxy_jump=proxy_jump,
        connect_timeout=float(timeout),
        alive_interval=alive_interval,
        alive_count=alive_count,
        config_file=config_file if os.path.isfile(config_file) else None,
        sources=picker.sources,
    )


def ssh_overrides_from_url(url: str, origin: Origin) -> dict[str, Any]:
    """The parts of an ``ssh://user@host:port`` docker_host, as explicit SSH settings."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InventoryError(f"docker_host {url!r} is not a URL", origin=origin) from None
    if not parts.hostname:
        raise InventoryError(f"docker_host {url!r} names no host", origin=origin)
    overrides: dict[str, Any] = {"ssh_host": parts.hostname}
    if parts.username:
        overrides["ssh_user"] = parts.username
    try:
        if parts.port:
            overrides["ssh_port"] = parts.port
    except ValueError:
        raise InventoryError(f"docker_host {url!r} has a port that is not a number", origin=origin) from None
    return overrides


def _tls_files(variables: Mapping[str, Any]) -> TLSFiles | None:
    cert_path = variables.get("docker_cert_path")
    defaults = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}
    files = {
        kind: variables.get(f"docker_tls_{kind}") or (os.path.join(cert_path, name) if cert_path else None)
        for kind, name in defaults.items()
    }
    verify = variables.get("docker_tls_verify")
    if not any(files.values()) and not verify:
        return None
    return TLSFiles(
        ca=_expanded(files["ca"]),
        cert=_expanded(files["cert"]),
        key=_expanded(files["key"]),
        verify=True if verify is None else bool(verify),
    )


def _expanded(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else None


def resolve_engine(variables: Mapping[str, Any], ssh: SSHSettings, origin: Origin) -> EngineEndpoint:
    """Where the host's Docker engine answers: ``docker_host``, or SSH to the host."""
    url = variables.get("docker_host")
    if url is None and variables.get("ansible_connection") == "local":
        return EngineEndpoint(LOCAL_ENGINE, "unix", derived=True)  # Ansible's "localhost ansible_connection=local"
    if url is None:
        return EngineEndpoint(f"ssh://{ssh.user}@{ssh.hostname}:{ssh.port}", "ssh", derived=True)
    if not isinstance(url, str) or any(c in url for c in "\0\r\n\t "):
        raise InventoryError(f"docker_host {str(url)[:100]!r} is not a URL", origin=origin)
    scheme, _, rest = url.partition("://")
    if scheme == "unix":
        parts = urlsplit(url)
        if not rest.startswith("/") or parts.query or parts.fragment or "?" in url or "#" in url:
            raise InventoryError(
                f"docker_host {url!r} must be unix:// and an absolute socket path, nothing more",
                hint="for example unix:///var/run/docker.sock", origin=origin,
            )  # fmt: skip
        return EngineEndpoint(url, "unix")
    if scheme == "ssh":
        return EngineEndpoint(f"ssh://{ssh.user}@{ssh.hostname}:{ssh.port}", "ssh")
    if scheme == "tcp":
        return _tcp_endpoint(url, variables, origin)
    raise InventoryError(
        f"docker_host {url!r} is in no form shipper knows",
        hint="use unix:///path/to/docker.sock, tcp://host:2376 (with TLS files) or ssh://user@host:port",
        origin=origin,
    )


def _tcp_endpoint(url: str, variables: Mapping[str, Any], origin: Origin) -> EngineEndpoint:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), -1
    if not parts.hostname or port == -1 or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InventoryError(f"docker_host {url!r} must be tcp://HOST:PORT", hint="an IPv6 address goes in brackets: tcp://[::1]:2376", origin=origin)
    tls = _tls_files(variables)
    port = port or (DOCKER_TLS_PORT if tls else 2375)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return EngineEndpoint(f"tcp://{host}:{port}", "tcp", tls=tls)
