"""Newer Docker engines for the lab, from Debian's own packages, without touching the system's apt state.

    kind "20.10"            the system's dockerd (Debian 12's docker.io)
    kind "podman"           ``podman system service`` (Debian 12's podman 4.3), a Docker-compatible API
    kind "26", "28"         trixie's docker.io 26.1 (containerd 1.7) / sid's 28.5 (containerd 2.1)
    suffix "-containerd"    with the containerd image store ("features": {"containerd-snapshotter": true})

The packages are fetched once with a throw-away apt configuration
(``apt-get download``) and unpacked with ``dpkg -x`` into
``/var/cache/shipper/engines/SUITE``; they run with the system's runc (theirs
needs a newer glibc). See ../shared/design.md §7.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from shipper.lab.procs import LabError

CACHE = Path("/var/cache/shipper/engines")
SUITES = {"26": "trixie", "28": "sid"}
PACKAGES = ("docker.io", "containerd")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


@dataclass(frozen=True)
class EngineKind:
    version: str  # "20.10", "26", "28"
    containerd_store: bool = False

    @classmethod
    def parse(cls, text: str) -> "EngineKind":
        version, _, store = text.partition("-")
        if version not in ("20.10", "podman", *SUITES) or store not in ("", "containerd") or (version == "podman" and store):
            raise LabError(f"unknown engine kind {text!r}", hint="podman, 20.10, 26, 28, the Docker ones optionally with -containerd")
        return cls(version, store == "containerd")

    def __str__(self) -> str:
        return self.version + ("-containerd" if self.containerd_store else "")


def binaries(kind: EngineKind) -> Path | None:
    """The unpacked root holding this kind's dockerd and containerd (None: the system's)."""
    if kind.version in ("20.10", "podman"):
        return None
    return fetch(SUITES[kind.version])


_LOCK = threading.Lock()  # lab hosts start in threads: one fetch per suite


def fetch(suite: str) -> Path:
    """The suite's Docker, unpacked once (under a lock: the lab starts its hosts at the same time)."""
    root = CACHE / suite / "root"
    with _LOCK:
        (CACHE / suite).mkdir(parents=True, exist_ok=True)
        with open(CACHE / suite / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (root / "usr/sbin/dockerd").exists():
                _download(suite, root)
    return root


def _download(suite: str, root: Path) -> None:
    partial = root.with_name("root.partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="shipper-apt-") as work:
        base = Path(work)
        for sub in ("etc/apt/preferences.d", "etc/apt/sources.list.d", "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "debs"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "status").write_text("")
        (base / "etc/apt/sources.list").write_text(f"deb [signed-by={KEYRING}] http://deb.debian.org/debian {suite} main\n")
        options = ["-o", f"Dir={base}", "-o", f"Dir::State::status={base / 'status'}", "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]
        for argv in (["apt-get", *options, "update", "-qq"], ["apt-get", *options, "download", "-qq", *PACKAGES]):
            done = subprocess.run(argv, cwd=base / "debs", capture_output=True, text=True)
            if done.returncode != 0:
                raise LabError(f"fetching Docker from Debian {suite} failed: {done.stderr.strip()[-300:]}", hint="is deb.debian.org reachable?")
        partial.mkdir(parents=True)
        for deb in sorted((base / "debs").glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(partial)], check=True)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
