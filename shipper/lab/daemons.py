"""The lab's daemons: a dockerd per host, an sshd per host, one registry.

Each one's files live under its own directory of the lab; ``start`` returns
at once when the daemon is already running, ``stop`` touches only a process
the lab started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from shipper import htpasswd, pki
from shipper.lab.engines import EngineKind, binaries
from shipper.lab.procs import LabError, our_pid, port_open, spawn, stop, unix_ping, wait_until

SSH_PORT = 2222
DOCKER_TLS_PORT = 2376
REGISTRY_PORT = 5000
REGISTRY_USER = "shipper"
TOKEN_PORT = 5001
TOKEN_SERVICE = "shipper-lab-registry"
TOKEN_ISSUER = "shipper-lab-tokens"
TOKEN_LIFETIME = 12  # seconds: short, so that a client renews its tokens during a test


def _need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        raise LabError(f"{binary} is not installed", hint=f"apt-get install {package} (scripts/setup does it)")
    return path


class _Owned:
    """A daemon whose pidfile lives in its directory; ``running``/``stop`` touch only ours."""

    dir: Path
    pid_name: ClassVar[str]

    @property
    def pidfile(self) -> Path:
        return self.dir / self.pid_name

    def running(self) -> bool:
        return our_pid(self.pidfile, str(self.dir)) is not None

    def stop(self) -> bool:
        return stop(self.pidfile, str(self.dir))


@dataclass(frozen=True)
class EngineDaemon(_Owned):
    """A dockerd of its own: socket, data root, exec root, TLS on its loopback address."""

    name: str
    address: str
    dir: Path
    disk_mb: int | None = None  # a data root of this size (a tmpfs), to meet a full disk
    kind: str = "20.10"  # see engines.py: 20.10 (the system's), 26, 28; -containerd for the containerd image store
    insecure_registries: tuple[str, ...] = ()  # plain-HTTP registries (Docker allows loopback ones by itself; podman does not)
    enter: tuple[str, ...] = ()  # argv prefix that runs it in its host's network namespace (netns.py), if it has one
    pid_name = "dockerd.pid"

    @property
    def socket(self) -> str:
        return str(self.dir / "docker.sock")

    @property
    def log(self) -> Path:
        return self.dir / "dockerd.log"

    def start(self, ca: Path, cert: Path, key: Path) -> None:
        if self.running() and unix_ping(self.socket):
            return
        kind = EngineKind.parse(self.kind)
        if kind.version == "podman":
            self._start_podman()
            return
        root = binaries(kind)
        dockerd = str(root / "usr/sbin/dockerd") if root else _need("dockerd", "docker.io")
        env = dict(os.environ, PATH=f"{root / 'usr/bin'}:{root / 'usr/sbin'}:{os.environ.get('PATH', '')}") if root else None
        for sub in ("data", "exec"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if self.disk_mb and not os.path.ismount(self.dir / "data"):
            subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.disk_mb}m", "tmpfs", str(self.dir / "data")], check=True)
        config = self.dir / "daemon.json"
        features = {"features": {"containerd-snapshotter": True}} if kind.containerd_store else {}
        config.write_text(json.dumps(features) + "\n")  # never the machine's /etc/docker/daemon.json
        argv = [
            dockerd, f"--config-file={config}",
            f"--host=unix://{self.socket}", f"--host=tcp://{self.address}:{DOCKER_TLS_PORT}",
            "--tlsverify", f"--tlscacert={ca}", f"--tlscert={cert}", f"--tlskey={key}",
            f"--data-root={self.dir / 'data'}", f"--exec-root={self.dir / 'exec'}", f"--pidfile={self.pidfile}",
            "--iptables=false", "--ip-masq=false", "--bridge=none",
        ]  # fmt: skip
        proc = spawn([*self.enter, *argv], self.log, env=env)
        wait_until(lambda: unix_ping(self.socket), f"dockerd of lab host {self.name}", self.log, alive=lambda: proc.poll() is None)


    def _start_podman(self) -> None:
        """podman's Docker-compatible API on this host's socket (no TLS port: podman serves one socket)."""
        podman = _need("podman", "podman")
        for sub in ("data", "exec"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        argv = [*self.enter, podman, "--root", str(self.dir / "data"), "--runroot", str(self.dir / "exec"), "system", "service", "--time=0", f"unix://{self.socket}"]
        # podman's own registries.conf: no short-name search, and the lab's plain-HTTP registries allowed.
        conf = self.dir / "registries.conf"
        conf.write_text("unqualified-search-registries = []\n" + "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in self.insecure_registries))
        proc = spawn(argv, self.log, self.pidfile, env={**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)})
        wait_until(lambda: unix_ping(self.socket), f"podman of lab host {self.name}", self.log, alive=lambda: proc.poll() is None)


@dataclass(frozen=True)
class SSHDaemon(_Owned):
    """An sshd on the host's loopback address whose sessions reach the host's engine."""

    name: str
    address: str
    dir: Path
    engine_socket: str
    authorized_keys: Path
    enter: tuple[str, ...] = ()  # argv prefix that runs it in its host's network namespace (netns.py), if it has one

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    pid_name = "sshd.pid"

    @property
    def home(self) -> Path:
        """The home of the host's sessions: a fleet host's root has /etc/skel's files, not this machine's /root (whose
        .bashrc, a developer's pyenv init, cost 127 ms in every SSH command and chose pyenv's python3)."""
        return self.dir / "home"

    def known_hosts_line(self) -> str:
        key_type, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[{self.address}]:{SSH_PORT} {key_type} {key}\n"

    def start(self) -> None:
        sshd = _need("sshd", "openssh-server")
        self.dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        if not self.host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True)
        self._make_home()
        config = self.dir / "sshd_config"
        text = (
            f"ListenAddress {self.address}:{SSH_PORT}\n"
            f"HostKey {self.host_key}\nPidFile {self.pidfile}\n"
            f"AuthorizedKeysFile {self.authorized_keys}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nPrintMotd no\n"
            # Remote `docker` (and docker-py's `docker system dial-stdio`) reaches this host's engine,
            # and keeps its CLI config (docker login) per lab host, not in this machine's /root/.docker.
            f"SetEnv DOCKER_HOST=unix://{self.engine_socket} DOCKER_CONFIG={self.dir / 'docker-config'} HOME={self.home}\n"
            "Subsystem sftp internal-sftp\n"
        )
        if self.running() and port_open(self.address, SSH_PORT):
            if config.exists() and config.read_text() == text:
                return
            config.write_text(text)  # a lab made by an older shipper: its sshd reads the new one when told
            os.kill(int(self.pidfile.read_text()), signal.SIGHUP)
            time.sleep(0.3)  # sshd closes its port and starts again
            wait_until(lambda: port_open(self.address, SSH_PORT), f"sshd of lab host {self.name}", self.dir / "sshd.log", timeout=20)
            return
        config.write_text(text)
        log = self.dir / "sshd.log"
        result = subprocess.run([*self.enter, sshd, "-f", str(config), "-E", str(log)], capture_output=True, text=True)
        if result.returncode != 0:
            raise LabError(f"sshd of lab host {self.name} did not start: {result.stderr.strip()}")
        wait_until(lambda: port_open(self.address, SSH_PORT), f"sshd of lab host {self.name}", log, timeout=20)

    def _make_home(self) -> None:
        if self.home.is_dir():
            return
        self.home.mkdir(mode=0o700)
        skel = Path("/etc/skel")
        for name in (".bashrc", ".profile", ".bash_logout"):
            if (skel / name).is_file():
                shutil.copyfile(skel / name, self.home / name)


@dataclass(frozen=True)
class RegistryDaemon(_Owned):
    """Debian's docker-registry (CNCF distribution), with TLS and htpasswd (bcrypt) auth;
    ``auth="token"``: TLS and Bearer tokens from the lab's token service (tokens.py);
    ``auth="none"``: plain HTTP, no auth (as many a private registry is run)."""

    address: str
    dir: Path
    auth: str = "htpasswd"
    enter: tuple[str, ...] = ()  # argv prefix that runs it in its host's network namespace (netns.py), if it has one

    @property
    def secure(self) -> bool:
        return self.auth != "none"

    @property
    def token_realm(self) -> str:
        return f"https://{self.address}:{TOKEN_PORT}/token"

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.address}:{REGISTRY_PORT}"

    @property
    def host_port(self) -> str:
        return f"{self.address}:{REGISTRY_PORT}"

    @property
    def password_file(self) -> Path:
        return self.dir / "password"

    pid_name = "registry.pid"

    def start(self, ca: pki.CertKey, password_from: Path | None = None) -> None:
        """``password_from``: use the password another lab registry has (one user for all)."""
        registry = _need("docker-registry", "docker-registry")
        if self.running() and port_open(self.address, REGISTRY_PORT):
            return
        for sub in ("auth", "certs", "data"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.password_file.exists():
            self.password_file.touch(mode=0o600)
            self.password_file.write_text(password_from.read_text() if password_from else secrets.token_urlsafe(24))
        htpasswd_file = self.dir / "auth" / "htpasswd"
        htpasswd_file.write_text(htpasswd.render({REGISTRY_USER: self.password_file.read_text()}))
        if not (self.dir / "certs/server.key").exists():
            pki.issue(ca, "lab registry", [self.address, "localhost"]).write(self.dir / "certs/server.crt", self.dir / "certs/server.key")
        config = self.dir / "config.yml"
        config.write_text(json.dumps(self._config(htpasswd_file), indent=2))  # JSON is YAML
        if self.auth == "token":
            self._start_token_service(ca, htpasswd_file)
        log = self.dir / "registry.log"
        proc = spawn([*self.enter, registry, "serve", str(config)], log, self.pidfile)
        wait_until(lambda: port_open(self.address, REGISTRY_PORT), "lab registry", log, alive=lambda: proc.poll() is None)

    def _start_token_service(self, ca: pki.CertKey, htpasswd_file: Path) -> None:
        certs = self.dir / "certs"
        if not (certs / "token-signer.key").exists():
            pki.issue(ca, "lab token signer").write(certs / "token-signer.crt", certs / "token-signer.key")
        pidfile = self.dir / "tokens.pid"
        if our_pid(pidfile, str(self.dir)) is not None and port_open(self.address, TOKEN_PORT):
            return
        argv = [
            *self.enter, sys.executable, "-m", "shipper.lab.tokens", "--addr", f"{self.address}:{TOKEN_PORT}",
            "--cert", str(certs / "server.crt"), "--key", str(certs / "server.key"), "--signing-key", str(certs / "token-signer.key"),
            "--htpasswd", str(htpasswd_file), "--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE, "--lifetime", str(TOKEN_LIFETIME),
        ]  # fmt: skip
        log = self.dir / "tokens.log"
        proc = spawn(argv, log, pidfile)
        wait_until(lambda: port_open(self.address, TOKEN_PORT), "lab token service", log, alive=lambda: proc.poll() is None)

    def stop(self) -> bool:
        stop(self.dir / "tokens.pid", str(self.dir))
        return super().stop()

    def _config(self, htpasswd_file: Path) -> dict[str, object]:
        secret_file = self.dir / "http-secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(32))  # stable across restarts, or uploads in flight die
        http: dict[str, object] = {"addr": self.host_port, "secret": secret_file.read_text()}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.dir / "data")},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": http,
        }
        if self.secure:
            http["tls"] = {"certificate": str(self.dir / "certs/server.crt"), "key": str(self.dir / "certs/server.key")}
        if self.auth == "htpasswd":
            config["auth"] = {"htpasswd": {"realm": "shipper-lab", "path": str(htpasswd_file)}}
        elif self.auth == "token":
            config["auth"] = {
                "token": {"realm": self.token_realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER, "rootcertbundle": str(self.dir / "certs/token-signer.crt")}
            }
        return config
