"""The registry's users and TLS material on its host: kept while they still fit, else made anew."""

from __future__ import annotations

import time
from pathlib import Path

from shipper import htpasswd, pki
from shipper.provision.layout import RENEW_BEFORE_DAYS, HostFiles, UpRequest


def htpasswd_file(files: HostFiles, users: dict[str, str]) -> bytes:
    """Keep the file when it already holds exactly these users with these passwords at today's bcrypt cost
    (bcrypt is salted: a new file would differ each time); one hashed at another cost is made anew."""
    old = (files.read("auth/htpasswd") or b"").decode()
    same_users = htpasswd.holds(old, users)
    if same_users and htpasswd.at_current_cost(old):
        return old.encode()
    new = htpasswd.render(users).encode()
    said = f"users: {', '.join(sorted(users))}"
    files.put("auth/htpasswd", new, f"{said} (hashed again at bcrypt cost {htpasswd.BCRYPT_ROUNDS})" if same_users else said)
    return new


def tls_material(files: HostFiles, request: UpRequest) -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key): kept while they cover every name and are not about to expire."""
    if request.cert is not None:
        cert, key = Path(request.cert[0]).read_bytes(), Path(request.cert[1]).read_bytes()
        ca = Path(request.ca).read_bytes() if request.ca else cert
        files.put("certs/server.crt", cert, "the given certificate")
        files.put("certs/server.key", key, "the given key")
        files.put("certs/ca.crt", ca, "the given CA", mode=0o644)
        return ca, cert, key
    ca_cert, ca_key = files.read("certs/ca.crt"), files.read("certs/ca.key")
    if ca_cert is None or ca_key is None:
        authority = pki.new_ca(f"shipper registry CA ({request.host.name})")
        files.put("certs/ca.crt", authority.cert_pem, "a new CA", mode=0o644)
        files.put("certs/ca.key", authority.key_pem, "a new CA key")
    else:
        authority = pki.CertKey(ca_cert, ca_key)
    old_cert, old_key = files.read("certs/server.crt"), files.read("certs/server.key")
    if old_cert is not None and old_key is not None and set(request.names()) <= pki.san_names(old_cert):
        if pki.expires(old_cert).timestamp() - time.time() > RENEW_BEFORE_DAYS * 86400:
            return authority.cert_pem, old_cert, old_key
    issued = pki.issue(authority, f"shipper registry {request.registry_address}", request.names())
    files.put("certs/server.crt", issued.cert_pem, f"a server certificate for {', '.join(request.names())}", mode=0o644)
    files.put("certs/server.key", issued.key_pem, "a new server key")
    return authority.cert_pem, issued.cert_pem, issued.key_pem
