"""The lab's token service: distribution's Bearer token auth, for a registry that uses it.

A registry configured with ``auth: token`` answers 401 with
``WWW-Authenticate: Bearer realm=…,service=…,scope=…``; the client asks the
realm (this service) for a token, with its username and password as Basic
auth. This service checks them against an htpasswd file (bcrypt), and signs a
JWT (ES256) granting the scopes asked for; the registry checks the signature
against ``rootcertbundle`` (the key is named by its libtrust key ID, ``kid``).
Tokens live ``--lifetime`` seconds, so tests can watch a client renew one.

    python -m shipper.lab.tokens --addr 127.0.9.12:5001 --cert C --key K --signing-key S \\
        --htpasswd F --issuer I --service S [--lifetime 60]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import bcrypt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(key: ec.EllipticCurvePublicKey) -> str:
    """The key ID distribution's token auth matches ``kid`` against (docker/libtrust)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def sign(claims: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    header = {"typ": "JWT", "alg": "ES256", "kid": libtrust_key_id(key.public_key())}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _access(scopes: list[str]) -> list[dict[str, Any]]:
    granted = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind and name:
            granted.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return granted


class TokenService:
    def __init__(self, htpasswd: Path, key: ec.EllipticCurvePrivateKey, issuer: str, service: str, lifetime: int) -> None:
        self.users = dict(line.split(":", 1) for line in htpasswd.read_text().splitlines() if ":" in line)
        self.key, self.issuer, self.service, self.lifetime = key, issuer, service, lifetime
        self.issued = 0

    def check(self, header: str | None) -> str | None:
        """The user a Basic ``Authorization`` header names, if its password is right."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        stored = self.users.get(user)
        return user if stored and bcrypt.checkpw(password.encode(), stored.encode()) else None

    def token(self, user: str, scopes: list[str]) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": user, "aud": self.service, "exp": now + self.lifetime, "nbf": now - 10, "iat": now,
            "jti": secrets.token_hex(8), "access": _access(scopes),
        }  # fmt: skip
        self.issued += 1
        value = sign(claims, self.key)
        return {"token": value, "access_token": value, "expires_in": self.lifetime, "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


def _handler(service: TokenService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path != "/token" or query.get("service", [""])[0] != service.service:
                self._answer(404, {"details": "unknown service"})
                return
            user = service.check(self.headers.get("Authorization"))
            if user is None:
                self._answer(401, {"details": "wrong username or password"})
                return
            self._answer(200, service.token(user, query.get("scope", [])))

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            print(f"token service: {format % args}", flush=True)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--addr", "--cert", "--key", "--signing-key", "--htpasswd", "--issuer", "--service"):
        parser.add_argument(option, required=True)
    parser.add_argument("--lifetime", type=int, default=60)
    args = parser.parse_args()
    key = serialization.load_pem_private_key(Path(args.signing_key).read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    service = TokenService(Path(args.htpasswd), key, args.issuer, args.service, args.lifetime)
    host, port = args.addr.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), _handler(service))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
