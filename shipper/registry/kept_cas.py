"""The CAs of the registries shipper brought up, kept on this machine for its own requests to them.

``registry up`` hands a registry's CA to the engines that must trust it
(``/etc/docker/certs.d/ADDR:PORT/ca.crt`` on each). The machine shipper runs on
is often none of them (a laptop, a CI runner), yet shipper's own client talks to
the registry too: a move's manifests, a site cache's filling, ``registry ls``.
So ``up`` keeps the CA here as well, under the user's config directory, and the
client trusts it for that address alone (after a CA given explicitly and the
engine convention's). A CA is no secret: the files are readable by all.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# host:port as a directory name: a host name, an IPv4 address or a bracketed IPv6 one, and a port. Anything else
# (a "/" or ".." from a hostile inventory's host name) would name a file elsewhere: never kept, never read.
_ADDRESS = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}")


def kept_cas_dir() -> Path:
    """``$XDG_CONFIG_HOME/shipper/certs.d`` (``~/.config/shipper/certs.d``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipper" / "certs.d"


def kept_ca(address: str) -> Path | None:
    """The CA kept for ``address`` (host:port), if there is one."""
    if not _ADDRESS.fullmatch(address):
        return None
    path = kept_cas_dir() / address / "ca.crt"
    return path if path.is_file() else None


def keep(address: str, ca: bytes, check: bool = False) -> bool:
    """Keep ``ca`` for ``address``; whether it was (``check``: would be) written, i.e. not there already (never
    for what is no host:port)."""
    if not _ADDRESS.fullmatch(address):
        return False
    path = kept_cas_dir() / address / "ca.crt"
    try:
        if path.read_bytes() == ca:
            return False
    except OSError:
        pass
    if not check:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(ca)
        temporary.chmod(0o644)
        temporary.replace(path)
    return True


def forget(port: int, ca: bytes) -> list[str]:
    """Remove the kept copies of ``ca`` for any name at ``port`` (its registry is gone); the addresses forgotten."""
    forgotten = []
    for path in sorted(kept_cas_dir().glob(f"*:{port}/ca.crt")):
        try:
            if path.read_bytes() != ca:
                continue
            path.unlink()
            path.parent.rmdir()
        except OSError:
            continue
        forgotten.append(path.parent.name)
    return forgotten
