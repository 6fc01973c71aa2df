"""A client of the Registry HTTP API V2 (CNCF distribution, OCI distribution spec).

``RegistryClient(address, credentials)`` is the one place a registry is
talked to; every requests exception and every error response becomes a
ShipperError here, naming the registry and what was being done.

- TLS is verified: with ``ca_file``, else the engine convention
  ``/etc/docker/certs.d/<host:port>/ca.crt`` (and ``client.cert``/``client.key``
  there), else the system's CAs. Plain HTTP only for a loopback address or
  with ``insecure``; never a silent downgrade.
- Retries: bounded, for transient failures only (connection resets, 5xx, 429
  with ``Retry-After``), and only for requests whose body can be sent again.
- Every digest is validated before it goes into a URL; manifests and configs
  are read up to 4 MiB; every manifest and blob read is checked against its
  digest (and size) while it is read.
- Credentials stay with the registry's own origin (scheme, host, port): a
  ``Link`` or ``Location`` that points elsewhere is refused, redirects to
  another host lose the ``Authorization`` header (requests), and a token realm
  gets the password only over HTTPS (plain HTTP only when the registry itself
  was named as plain HTTP).
- Every read is bounded: bodies by size (4 MiB of metadata, 64 KiB of an error
  message), requests by a deadline (60 s, longer for a large upload; blobs must
  keep up an average of 16 KiB/s), pagination by pages that must each be new.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters

from shipper.errors import (
    DigestMismatch,
    RegistryAuthFailed,
    RegistryError,
    RegistryNotFound,
    RegistryUnreachable,
    ShipperError,
    UsageError,
)
from shipper.registry.auth import Authenticator
from shipper.registry.deadline import Deadline, WatchedAdapter
from shipper.registry.credentials import Credentials
from shipper.registry.names import Address, check_digest, check_repository

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_METADATA = 4 << 20
CHUNK = 1 << 20
UPLOAD_CHUNK = 16 << 20  # bigger blobs go up in PATCH chunks of this size (and resume from the last one)
RETRIES = 3
MAX_RESUMES = 5
MAX_RETRY_AFTER = 30.0
MAX_ERROR_BODY = 64 << 10  # an error response is read this far, for its message
MAX_PAGES = 10_000  # catalog or tag pages followed; each must be a new URL of the registry's own
MAX_REDIRECTS = 5
REQUEST_DEADLINE = 60.0  # seconds for a whole request (headers and a metadata body)
MIN_RATE = 16 << 10  # bytes/s a blob or an upload must keep up on average, after REQUEST_DEADLINE's grace
CERTS_D = Path("/etc/docker/certs.d")
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")

# What the spec's error codes mean to a user, and what to do.
_CODES: dict[str, tuple[type[ShipperError], str | None]] = {
    "UNAUTHORIZED": (RegistryAuthFailed, "check the credentials (shipper registry login)"),
    "DENIED": (RegistryAuthFailed, "the user may not do this: ask the registry's administrator for access"),
    "NAME_UNKNOWN": (RegistryNotFound, "shipper registry ls lists the repositories"),
    "MANIFEST_UNKNOWN": (RegistryNotFound, "shipper registry tags lists the tags"),
    "BLOB_UNKNOWN": (RegistryNotFound, None),
    "BLOB_UPLOAD_UNKNOWN": (RegistryNotFound, "the upload expired or was cancelled; run again"),
    "DIGEST_INVALID": (DigestMismatch, "the content was damaged on the way; run again"),
    "SIZE_INVALID": (DigestMismatch, "the content was cut on the way; run again"),
    "MANIFEST_BLOB_UNKNOWN": (RegistryError, "push the image's layers and config before its manifest"),
    "MANIFEST_INVALID": (RegistryError, None),
    "NAME_INVALID": (RegistryError, None),
    "TAG_INVALID": (RegistryError, None),
    "UNSUPPORTED": (
        RegistryError,
        "the registry does not allow this: it may be read-only for maintenance (garbage collection: try again shortly), "
        "or have deleting switched off (REGISTRY_STORAGE_DELETE_ENABLED=true)",
    ),
    "TOOMANYREQUESTS": (RegistryError, "the registry limits requests: wait a while, then run again"),
}


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str = ""  # os/arch[/variant], in an index


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry holds it."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def document(self) -> dict[str, Any]:
        try:
            data = json.loads(self.raw)
        except ValueError:
            raise RegistryError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def config(self) -> Descriptor | None:
        return _descriptor(self.document.get("config"))

    @property
    def layers(self) -> list[Descriptor]:
        return [d for d in (_descriptor(x) for x in self.document.get("layers") or []) if d is not None]

    @property
    def manifests(self) -> list[Descriptor]:
        return [d for d in (_descriptor(x) for x in self.document.get("manifests") or []) if d is not None]


def _descriptor(raw: Any) -> Descriptor | None:
    if not isinstance(raw, dict):
        return None
    platform = raw.get("platform") or {}
    plat = "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))
    digest = str(raw.get("digest", ""))
    check_digest(digest, "descriptor digest")
    return Descriptor(str(raw.get("mediaType", "")), digest, _size(raw.get("size", 0), f"the size of {digest}"), plat)


def _size(value: Any, what: str) -> int:
    """A size a registry gave (a JSON field or a header): a non-negative integer, else RegistryError."""
    if isinstance(value, bool):
        value = None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise RegistryError(f"the registry gave {what} as {str(value)[:40]!r}, which is not a size") from None
    if size < 0:
        raise RegistryError(f"the registry gave {what} as {size}, which is not a size")
    return size


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass
class UploadStats:
    """How chunked uploads went: offsets resumed from after a dropped connection, restarts from zero."""

    resumed_at: list[int] = field(default_factory=list)
    restarts: int = 0


class _Verifier:
    """Hashes content as it streams by; ``check`` at the end."""

    def __init__(self, digest: str) -> None:
        self.digest = digest
        self.sha = hashlib.new(digest.split(":", 1)[0])
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)

    @property
    def actual(self) -> str:
        return f"{self.digest.split(':', 1)[0]}:{self.sha.hexdigest()}"


class RegistryClient:
    """One registry. Use as a context manager, or call ``close()``."""

    def __init__(
        self, address: Address, credentials: Credentials | None = None, ca_file: str | None = None,
        insecure: bool = False, timeout: float = 30.0, certs_dir: Path = CERTS_D,
    ) -> None:  # fmt: skip
        if address.plain_http and not (address.is_loopback or insecure):
            raise UsageError(
                f"refusing plain HTTP to registry {address}: credentials and images would cross the network unprotected",
                hint="use HTTPS (shipper registry up sets it up), or pass --insecure if you really mean it",
            )
        self.address = address
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy or CA bundle from the environment behind the user's back
        self.session.headers["User-Agent"] = "shipper"
        self.session.max_redirects = MAX_REDIRECTS
        for scheme in ("https://", "http://"):
            self.session.mount(scheme, WatchedAdapter(pool_connections=2, pool_maxsize=8))
        self.session.verify = self._verify(ca_file, insecure, certs_dir)
        self.ca_source = ca_file or (str(certs_dir / address.host / "ca.crt") if self.session.verify not in (True, False) else "")
        client_cert, client_key = certs_dir / address.host / "client.cert", certs_dir / address.host / "client.key"
        if not ca_file and client_cert.is_file() and client_key.is_file():
            self.session.cert = (str(client_cert), str(client_key))
        self.auth = Authenticator(str(address), credentials, self._token_get, plain_realm_allowed=address.plain_http)
        self.uploads = UploadStats()

    def _verify(self, ca_file: str | None, insecure: bool, certs_dir: Path) -> bool | str:
        if ca_file:
            if not Path(ca_file).is_file():
                raise UsageError(f"the CA file {ca_file} does not exist")
            return ca_file
        if insecure:
            return False
        engine_ca = certs_dir / self.address.host / "ca.crt"
        if engine_ca.is_file():
            return str(engine_ca)
        return str(SYSTEM_CAS) if SYSTEM_CAS.is_file() else True

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "RegistryClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.address.base_url + "/", path.lstrip("/")) if not path.startswith("http") else path

    @property
    def origin(self) -> tuple[str, str, int]:
        return _origin(self.address.base_url)

    def _own(self, url: str, what: str) -> str:
        """``url`` (resolved against the registry), if it is on the registry's own origin; else RegistryError."""
        absolute = urljoin(self.address.base_url + "/", url)
        try:
            same = _origin(absolute) == self.origin
        except ValueError:
            same = False
        if not same:
            raise RegistryError(
                f"registry {self.address} sent {what} pointing to another place ({_shown(absolute)}): refused, "
                "shipper sends credentials and images only to the registry it was given",
                hint="if the registry really lives there, name that address instead",
            )
        return absolute

    def _token_get(self, url: str, params: dict[str, str], headers: dict[str, str]) -> requests.Response:
        scopes = params.pop("scope", "")
        query: list[tuple[str, str]] = [*params.items(), *(("scope", s) for s in scopes.split() if s)]
        return self._send("GET", url, "", params=query, headers=headers, authenticate=False, action="fetch a token")

    def _send(
        self, method: str, path: str, scope: str, *, params: Any = None, headers: dict[str, str] | None = None,
        data: bytes | None = None, stream: bool = False, authenticate: bool = True, action: str = "", replayable: bool = True,
    ) -> requests.Response:  # fmt: skip
        """One request, with authentication and bounded retries of transient failures.

        ``replayable=False``: never sent twice (an upload chunk: after a drop, the caller asks where the upload stands)."""
        url = self._url(path)
        if authenticate:
            url = self._own(url, "a URL")  # the callers check first, with a better name for it; this is the backstop
        attempt = auth_rounds = 0
        while True:
            sent_headers = dict(headers or {})
            if authenticate:
                sent_headers.update(self.auth.header(scope))
            deadline = Deadline(REQUEST_DEADLINE + len(data or b"") / MIN_RATE).start()
            try:
                with deadline.current():
                    response = self.session.request(
                        method, url, params=params, headers=sent_headers, data=data, stream=True, timeout=self.timeout
                    )
                response.shipper_deadline = deadline  # type: ignore[attr-defined]
                if method == "HEAD":  # no body, whatever Content-Length says (the blob's size)
                    deadline.done()
                elif not stream:
                    failed = response.status_code >= 400
                    doing = action or f"answer {method} {_shown(url)}"
                    _read_body(response, MAX_ERROR_BODY if failed else MAX_METADATA, "an answer", doing, self, truncate=failed)
            except requests.exceptions.SSLError as exc:
                deadline.done()
                raise self._tls_error(exc) from None
            except requests.exceptions.TooManyRedirects:
                deadline.done()
                raise RegistryError(f"registry {self.address} redirected more than {MAX_REDIRECTS} times{' to ' + action if action else ''}") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                deadline.done()
                if deadline.expired:
                    raise self._too_slow(action or f"answer {method} {_shown(url)}", deadline) from None
                if replayable and attempt < RETRIES:
                    attempt += 1
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise RegistryUnreachable(
                    f"cannot reach registry {self.address}{' to ' + action if action else ''}: {_why(exc)}",
                    hint="is the registry running, and is the address (host:port) right?",
                ) from None
            except BaseException:
                deadline.done()
                raise
            if response.status_code == 401 and authenticate and auth_rounds < 2:
                challenge = response.headers.get("WWW-Authenticate", "")
                if challenge and self.auth.challenged(challenge, scope, "Authorization" in sent_headers):
                    auth_rounds += 1
                    if replayable:
                        response.close()
                        continue
            if (response.status_code in (429, 500, 502, 503, 504)) and replayable and attempt < RETRIES:
                attempt += 1
                time.sleep(_retry_after(response, attempt))
                response.close()
                continue
            return response

    def _too_slow(self, action: str, deadline: Deadline) -> RegistryUnreachable:
        return RegistryUnreachable(
            f"registry {self.address} did not {action} within {deadline.seconds:.0f} s: it sends too slowly, or stopped sending",
            hint="check the registry and the link to it, then run again",
        )

    def _tls_error(self, exc: Exception) -> RegistryUnreachable:
        where = f"CA {self.ca_source}" if self.ca_source else "the system's CAs"
        return RegistryUnreachable(
            f"the TLS certificate of registry {self.address} cannot be verified with {where}: {_why(exc)}",
            hint=f"give the registry's CA with --ca FILE, or install it as {CERTS_D}/{self.address.host}/ca.crt",
        )

    def _fail(self, response: requests.Response, action: str) -> ShipperError:
        """An error response as a ShipperError saying what was being done."""
        errors: list[dict[str, Any]] = []
        try:
            raw = _read_body(response, MAX_ERROR_BODY, "an error message", action, self, truncate=True)
            body = json.loads(raw) if raw else {}
            errors = [e for e in (body.get("errors") or []) if isinstance(e, dict)] if isinstance(body, dict) else []
        except (ValueError, ShipperError):
            pass
        code = str(errors[0].get("code", "")) if errors else ""
        detail = "; ".join(str(e.get("message", ""))[:200] for e in errors[:5] if e.get("message")) or response.reason or ""
        status = response.status_code
        if not code and status == 405:
            code = "UNSUPPORTED"  # distribution's read-only mode answers 405 with no body
        kind, hint = _CODES.get(code, (None, None))
        if kind is None:
            kind = {401: RegistryAuthFailed, 403: RegistryAuthFailed, 404: RegistryNotFound}.get(status, RegistryError)
        if status == 401 and not code:
            code = "UNAUTHORIZED"
        message = f"registry {self.address} refused to {action}: {code or status} {detail}".rstrip()
        return kind(message, hint=hint)

    def _expect(self, response: requests.Response, ok: tuple[int, ...], action: str) -> requests.Response:
        if response.status_code not in ok:
            error = self._fail(response, action)
            response.close()
            raise error
        return response

    # -- the API ----------------------------------------------------------------------

    def ping(self) -> str:
        """Check ``/v2/`` answers as a registry (logging in if it asks); its API version."""
        response = self._expect(self._send("GET", "/v2/", "", action="answer /v2/"), (200,), "answer /v2/")
        version = response.headers.get("Docker-Distribution-API-Version", "")
        if version and not version.startswith("registry/2."):
            raise RegistryError(f"{self.address} speaks {version}, not the registry API v2")
        return version or "registry/2.0"

    def _pages(self, path: str, scope: str, key: str, page_size: int, action: str) -> Iterator[str]:
        """Items of every page, following ``Link: <…>; rel="next"``: only to new URLs of the registry's own."""
        url: str | None = path
        params: dict[str, Any] | None = {"n": page_size}
        seen: set[str] = set()
        while url:
            if len(seen) >= MAX_PAGES:
                raise RegistryError(f"registry {self.address} sent more than {MAX_PAGES} pages while trying to {action}")
            response = self._expect(self._send("GET", url, scope, params=params, action=action), (200,), action)
            seen.add(response.url)
            try:
                document = response.json()
            except ValueError:
                raise RegistryError(f"registry {self.address} sent a page that is not JSON while trying to {action}") from None
            items = document.get(key) if isinstance(document, dict) else None
            if not isinstance(items, (list, type(None))):
                raise RegistryError(f"registry {self.address} sent a page whose {key!r} is not a list while trying to {action}")
            yield from (str(item) for item in items or [])
            following = response.links.get("next", {}).get("url")
            if not following:
                return
            url, params = self._own(urljoin(response.url, following), "a next-page link"), None
            if url in seen:
                raise RegistryError(f"registry {self.address} sent a next-page link to a page already read ({_shown(url)}) while trying to {action}")

    def catalog(self, page_size: int = 100) -> Iterator[str]:
        """Every repository (``/v2/_catalog``, page by page)."""
        return self._pages("/v2/_catalog", "registry:catalog:*", "repositories", page_size, "list its repositories")

    def tags(self, repository: str, page_size: int = 100) -> Iterator[str]:
        check_repository(repository)
        return self._pages(f"/v2/{repository}/tags/list", _scope(repository, "pull"), "tags", page_size, f"list the tags of {repository}")

    def manifest_head(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor, or None when there is none under ``reference``."""
        check_repository(repository)
        _check_reference(reference)
        response = self._send(
            "HEAD", f"/v2/{repository}/manifests/{reference}", _scope(repository, "pull"), headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        self._expect(response, (200,), f"find manifest {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest", "")
        check_digest(digest, "Docker-Content-Digest")
        size = _size(response.headers.get("Content-Length", 0), f"the size of manifest {repository}:{reference}")
        return Descriptor(response.headers.get("Content-Type", ""), digest, size)

    def manifest(self, repository: str, reference: str) -> Manifest:
        """The manifest (or index) under a tag or digest, checked against its digest."""
        check_repository(repository)
        _check_reference(reference)
        action = f"read manifest {repository}{'@' if ':' in reference else ':'}{reference}"
        response = self._expect(
            self._send("GET", f"/v2/{repository}/manifests/{reference}", _scope(repository, "pull"),
                       headers={"Accept": ", ".join(MANIFEST_TYPES)}, stream=True, action=action),
            (200,), action,
        )  # fmt: skip
        raw = _read_body(response, MAX_METADATA, f"manifest {repository}:{reference}", action, self)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or _media_type_in(raw)
        expected = reference if ":" in reference else response.headers.get("Docker-Content-Digest", "")
        digest = digest_of(raw, expected.split(":", 1)[0] if expected else "sha256")
        if expected and digest != expected:
            raise DigestMismatch(f"manifest {repository}:{reference} from {self.address} has digest {digest}, not {expected}")
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"manifest {repository}:{reference} is of type {media_type!r}, which shipper does not read")
        return Manifest(raw, media_type, digest)

    def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> str:
        """Store ``manifest`` under a tag (or its digest); its digest, as the registry confirms it."""
        check_repository(repository)
        _check_reference(reference)
        action = f"store manifest {repository}:{reference}"
        response = self._expect(
            self._send("PUT", f"/v2/{repository}/manifests/{reference}", _scope(repository, "pull,push"),
                       headers={"Content-Type": manifest.media_type}, data=manifest.raw, action=action),
            (201,), action,
        )  # fmt: skip
        confirmed = response.headers.get("Docker-Content-Digest", manifest.digest)
        if confirmed != manifest.digest:
            raise DigestMismatch(f"registry {self.address} stored manifest {repository}:{reference} as {confirmed}, not {manifest.digest}")
        return confirmed

    def delete_manifest(self, repository: str, digest: str) -> None:
        """Delete a manifest by digest: every tag on it goes too."""
        check_repository(repository)
        check_digest(digest)
        action = f"delete manifest {repository}@{digest}"
        self._expect(self._send("DELETE", f"/v2/{repository}/manifests/{digest}", _scope(repository, "delete"), action=action), (202,), action)

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size, or None when the repository does not have it."""
        check_repository(repository)
        check_digest(digest)
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", _scope(repository, "pull"))
        if response.status_code == 404:
            return None
        self._expect(response, (200,), f"find blob {digest} in {repository}")
        return _size(response.headers.get("Content-Length", 0), f"the size of blob {digest}")

    def blob(self, repository: str, digest: str, size: int | None = None, chunk: int = CHUNK) -> Iterator[bytes]:
        """A blob's bytes, streamed; ``DigestMismatch`` at the end (before the iterator ends) if they are wrong.

        Callers must treat what they received as unverified until the iterator has ended.
        """
        check_repository(repository)
        check_digest(digest)
        action = f"read blob {digest} of {repository}"
        response = self._expect(
            self._send("GET", f"/v2/{repository}/blobs/{digest}", _scope(repository, "pull"), stream=True, action=action), (200,), action
        )
        verifier = _Verifier(digest)
        deadline = _deadline(response)
        try:
            for piece in response.iter_content(chunk):
                verifier.update(piece)
                if size is not None and verifier.size > size:
                    raise DigestMismatch(f"blob {digest} of {repository} from {self.address} is longer than its {size} bytes")
                if deadline is not None:  # a slow link is fine; a trickle or a stall is not
                    deadline.allow_until(deadline.started + REQUEST_DEADLINE + verifier.size / MIN_RATE)
                yield piece
        except requests.exceptions.RequestException as exc:
            if deadline is not None and deadline.expired:
                raise self._too_slow(f"send blob {digest} at {MIN_RATE >> 10} KiB/s or more", deadline) from None
            raise RegistryUnreachable(f"registry {self.address} broke off while sending blob {digest}: {_why(exc)}") from None
        finally:
            if deadline is not None:
                deadline.done()
            response.close()
        if (size is not None and verifier.size != size) or verifier.actual != digest:
            raise DigestMismatch(
                f"blob {digest} of {repository} from {self.address} is corrupt: its content has digest {verifier.actual} ({verifier.size} bytes)",
                hint="the registry's storage may be damaged: push the image again",
            )

    def blob_bytes(self, repository: str, digest: str, limit: int = MAX_METADATA) -> bytes:
        """A small blob (a config) in memory, verified."""
        size = self.blob_size(repository, digest)
        if size is None:
            raise RegistryNotFound(f"registry {self.address} has no blob {digest} in {repository}")
        if size > limit:
            raise RegistryError(f"blob {digest} of {repository} is {size} bytes; metadata over {limit} bytes is refused")
        return b"".join(self.blob(repository, digest, size))

    # -- uploads ----------------------------------------------------------------------

    def mount_blob(self, repository: str, digest: str, source_repository: str) -> bool:
        """Link a blob another repository holds into ``repository``; False when the registry would not."""
        check_repository(repository)
        check_repository(source_repository)
        check_digest(digest)
        scope = f"{_scope(repository, 'pull,push')} {_scope(source_repository, 'pull')}"
        response = self._send(
            "POST", f"/v2/{repository}/blobs/uploads/", scope, params={"mount": digest, "from": source_repository}
        )
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # an upload was started instead: cancel it
            self._send("DELETE", self._location(response, "cancel the upload"), _scope(repository, "pull,push")).close()
            return False
        raise self._fail(response, f"mount blob {digest} into {repository}")

    def upload_blob(
        self, repository: str, digest: str, size: int, read_from: Callable[[int], Iterator[bytes]],
        chunk_size: int = UPLOAD_CHUNK, on_progress: Callable[[int], None] | None = None,
    ) -> str:  # fmt: skip
        """Upload a blob unless the repository has it: "exists" or "uploaded".

        ``read_from(offset)`` yields the blob's bytes from ``offset`` on: a
        dropped connection resumes from the offset the registry reports.
        A blob up to ``chunk_size`` goes up in one PUT; a bigger one in PATCH chunks.
        """
        check_repository(repository)
        check_digest(digest)
        if self.blob_size(repository, digest) is not None:
            return "exists"
        scope = _scope(repository, "pull,push")
        action = f"upload blob {digest} to {repository}"
        location = self._start_upload(repository, scope, action)
        if size <= chunk_size:
            body = b"".join(read_from(0))
            self._finish_upload(location, digest, scope, action, body)
        else:
            location = self._upload_chunks(repository, location, size, read_from, chunk_size, scope, action, on_progress)
            self._finish_upload(location, digest, scope, action, b"")
        if on_progress is not None:
            on_progress(size)
        return "uploaded"

    def _start_upload(self, repository: str, scope: str, action: str) -> str:
        response = self._expect(self._send("POST", f"/v2/{repository}/blobs/uploads/", scope, action=action), (202,), action)
        return self._location(response, action)

    def _location(self, response: requests.Response, action: str) -> str:
        location = response.headers.get("Location")
        if not location:
            raise RegistryError(f"registry {self.address} gave no upload location to {action}")
        return self._own(location, f"an upload location (to {action})")

    def _upload_chunks(
        self, repository: str, location: str, size: int, read_from: Callable[[int], Iterator[bytes]], chunk_size: int, scope: str, action: str,
        on_progress: Callable[[int], None] | None,
    ) -> str:  # fmt: skip
        offset, resumes = 0, 0
        while offset < size:
            try:
                chunk = _take(read_from(offset), min(chunk_size, size - offset))
                headers = {"Content-Type": "application/octet-stream", "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                response = self._send("PATCH", location, scope, headers=headers, data=chunk, action=action, replayable=False)
            except RegistryUnreachable:
                if resumes >= MAX_RESUMES:
                    raise
                resumes += 1
                time.sleep(0.2 * resumes)
                try:
                    location, offset = self._upload_status(location, scope, action)
                    self.uploads.resumed_at.append(offset)
                except RegistryNotFound:
                    # distribution 2.x cancels an upload that received part of a chunk: start again.
                    location, offset = self._start_upload(repository, scope, action), 0
                    self.uploads.restarts += 1
                continue
            self._expect(response, (202,), action)
            location = self._location(response, action)
            offset = _range_end(response.headers.get("Range", "")) + 1 if response.headers.get("Range") else offset + len(chunk)
            if on_progress is not None:
                on_progress(offset)
        return location

    def _upload_status(self, location: str, scope: str, action: str) -> tuple[str, int]:
        """Where an interrupted upload stands: its location and how many bytes the registry holds."""
        response = self._expect(self._send("GET", location, scope, action=action), (204,), action)
        held = response.headers.get("Range", "")
        return self._location(response, action), (_range_end(held) + 1 if held else 0)

    def _finish_upload(self, location: str, digest: str, scope: str, action: str, body: bytes) -> None:
        headers = {"Content-Type": "application/octet-stream"}
        response = self._expect(self._send("PUT", location, scope, params={"digest": digest}, headers=headers, data=body, action=action), (201,), action)
        confirmed = response.headers.get("Docker-Content-Digest", digest)
        if confirmed != digest:
            raise DigestMismatch(f"registry {self.address} stored blob {confirmed}, not {digest}")


def _scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _check_reference(reference: str) -> None:
    if ":" in reference:
        check_digest(reference)
    else:
        from shipper.registry.names import check_tag

        check_tag(reference)


def _deadline(response: requests.Response) -> Deadline | None:
    return getattr(response, "shipper_deadline", None)


def _read_body(response: requests.Response, limit: int, what: str, action: str, client: RegistryClient, truncate: bool = False) -> bytes:
    """The body of a streamed response (``what``, read to ``action``), at most ``limit`` bytes, within the request's deadline.

    Over ``limit``: RegistryError, or with ``truncate`` the first ``limit`` bytes.
    The body is kept as the response's content (``.json()`` works on it)."""
    if response._content_consumed:  # type: ignore[attr-defined]
        return response.content[:limit] if truncate else response.content
    deadline = _deadline(response)
    data = bytearray()
    try:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit and not truncate:
            raise RegistryError(f"registry {client.address} sent {what} of {int(declared)} bytes trying to {action}; over {limit} bytes is refused")
        for piece in response.iter_content(65536):
            data += piece
            if len(data) > limit:
                if truncate:
                    del data[limit:]
                    break
                raise RegistryError(f"registry {client.address} sent {what} of over {limit} bytes trying to {action}; that much is refused")
    except requests.exceptions.RequestException as exc:
        if deadline is not None and deadline.expired:
            raise client._too_slow(action, deadline) from None
        raise RegistryUnreachable(f"registry {client.address} broke off while sending {what} (trying to {action}): {_why(exc)}") from None
    finally:
        if deadline is not None:
            deadline.done()
        if len(data) >= limit or not response._content_consumed:  # type: ignore[attr-defined]
            response.close()
    response._content = bytes(data)
    response._content_consumed = True  # type: ignore[attr-defined]
    return bytes(data)


def _media_type_in(raw: bytes) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        return ""
    return str(document.get("mediaType", "")) if isinstance(document, dict) else ""


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL; ValueError when it has none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    return parts.scheme, parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)


def _shown(url: str) -> str:
    """A URL as it may appear in a message: no user info, no query, bounded."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    number = _port_or_none(parts)
    port = f":{number}" if number else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"[:200]


def _port_or_none(parts: Any) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _take(chunks: Iterator[bytes], size: int) -> bytes:
    """Exactly ``size`` bytes from ``chunks`` (a chunk of an upload, held to be sent again if need be)."""
    data = bytearray()
    for piece in chunks:
        data += piece[: size - len(data)]
        if len(data) >= size:
            break
    if len(data) < size:
        raise ShipperError(f"the content to upload ended {size - len(data)} bytes early")
    return bytes(data)


def _range_end(header: str) -> int:
    """``0-1234`` (or ``bytes=0-1234``) -> 1234."""
    try:
        return int(header.split("=")[-1].split("-")[1])
    except (IndexError, ValueError):
        raise RegistryError(f"the registry reported an upload range shipper cannot read: {header!r}") from None


def _retry_after(response: requests.Response, attempt: int) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "")), MAX_RETRY_AFTER)
    except ValueError:
        return 0.2 * 2**attempt


def _why(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]
