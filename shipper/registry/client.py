"""A client of the Registry HTTP API V2 (CNCF distribution, OCI distribution spec).

``RegistryClient(address, credentials)`` is the one place a registry is
talked to: the API (catalog, tags, manifests, blobs, uploads) on top of
``RegistryHTTP`` (http.py: TLS, authentication, retries, deadlines, bounded
bodies, one origin). Every digest is validated before it goes into a URL;
manifests and configs are read up to 4 MiB; every manifest and blob read is
checked against its digest (and size) while it is read; pagination follows
only new URLs of the registry's own.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urljoin

import requests

from shipper.errors import DigestMismatch, RegistryError, RegistryNotFound, RegistryUnreachable, ShipperError
from shipper.registry.credentials import Credentials
from shipper.registry.http import RegistryHTTP, deadline_of, read_body, shown, why
from shipper.registry.manifest import (  # noqa: F401  (re-exported: the registry's values are reached through here too)
    DOCKER_LIST, DOCKER_MANIFEST, INDEX_TYPES, MANIFEST_TYPES, MAX_METADATA, OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, digest_of, size_of,
)  # fmt: skip
from shipper.registry.names import Address, check_digest, check_repository

CHUNK = 1 << 20
MAX_RESUMES = 5
MAX_PAGES = 10_000  # catalog or tag pages followed; each must be a new URL of the registry's own
UPLOAD_CHUNK = 16 << 20  # bigger blobs go up in PATCH chunks of this size (and resume from the last one)


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


class RegistryClient(RegistryHTTP):
    """One registry. Use as a context manager, or call ``close()``."""

    def __init__(
        self, address: Address, credentials: Credentials | None = None, ca_file: str | None = None,
        insecure: bool = False, timeout: float = 30.0, certs_dir: Path | None = None,
    ) -> None:  # fmt: skip
        super().__init__(address, credentials, ca_file, insecure, timeout, certs_dir)
        self.uploads = UploadStats()

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
                raise RegistryError(f"registry {self.address} sent a next-page link to a page already read ({shown(url)}) while trying to {action}")

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
        size = size_of(response.headers.get("Content-Length", 0), f"the size of manifest {repository}:{reference}")
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
        raw = read_body(response, MAX_METADATA, f"manifest {repository}:{reference}", action, self)
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip() or _media_type_in(raw)
        expected = reference if ":" in reference else response.headers.get("Docker-Content-Digest", "")
        digest = digest_of(raw, expected.split(":", 1)[0] if expected else "sha256")
        if expected and digest != expected:
            raise DigestMismatch(f"manifest {repository}:{reference} from {self.address} has digest {digest}, not {expected}")
        if media_type not in MANIFEST_TYPES:
            raise RegistryError(f"manifest {repository}:{reference} is of type {media_type!r}, which shipper does not read")
        return Manifest(raw, media_type, digest)

    def referrers(self, repository: str, digest: str) -> list[Descriptor] | None:
        """The manifests whose ``subject`` is ``digest`` (OCI 1.1's referrers API), or None where the registry does
        not serve that API (distribution before 3.0 answers 404: cosign's tag scheme is then the way)."""
        check_repository(repository)
        check_digest(digest)
        action = f"list the referrers of {repository}@{digest}"
        response = self._send("GET", f"/v2/{repository}/referrers/{digest}", _scope(repository, "pull"), headers={"Accept": OCI_INDEX},
                              stream=True, action=action)  # fmt: skip
        if response.status_code in (404, 405):
            response.close()
            return None
        self._expect(response, (200,), action)
        raw = read_body(response, MAX_METADATA, f"the referrers of {repository}@{digest}", action, self)
        index = Manifest(raw, OCI_INDEX, digest_of(raw, "sha256"))
        return index.manifests

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
        return size_of(response.headers.get("Content-Length", 0), f"the size of blob {digest}")

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
        deadline = deadline_of(response)
        try:
            for piece in response.iter_content(chunk):
                verifier.update(piece)
                if size is not None and verifier.size > size:
                    raise DigestMismatch(f"blob {digest} of {repository} from {self.address} is longer than its {size} bytes")
                self.keep_up(deadline, verifier.size)
                yield piece
        except requests.exceptions.RequestException as exc:
            if deadline is not None and deadline.expired:
                raise self._too_slow(f"send blob {digest} fast enough", deadline) from None
            raise RegistryUnreachable(f"registry {self.address} broke off while sending blob {digest}: {why(exc)}") from None
        finally:
            if deadline is not None:
                deadline.done()
            response.close()
        if (size is not None and verifier.size != size) or verifier.actual != digest:
            raise DigestMismatch(
                f"blob {digest} of {repository} from {self.address} is corrupt: its content has digest {verifier.actual} ({verifier.size} bytes)",
                hint="the registry's storage may be damaged: push the image again",
            )

    def holds_blob(self, repository: str, digest: str) -> bool:
        """Whether the registry serves the blob from its own storage, asked for its first byte and hung up on.

        A registry answers a byte range of a blob it stores (206). A pull-through
        cache (distribution's proxy mode) answers a blob it does not hold yet in
        full (200), fetched from its upstream for this request and, if no other
        request is fetching it already, also fetched once more to keep: hanging
        up on that answer at once is what makes a cache start filling while almost
        nothing crosses, to here or from its upstream."""
        check_repository(repository)
        check_digest(digest)
        action = f"ask for blob {digest} of {repository}"
        response = self._send("GET", f"/v2/{repository}/blobs/{digest}", _scope(repository, "pull"), headers={"Range": "bytes=0-0"}, stream=True, action=action, probe=True)
        try:
            self._expect(response, (200, 206), action)
            return response.status_code == 206
        finally:
            deadline = deadline_of(response)
            if deadline is not None:
                deadline.done()
            response.close()  # unread: the connection is dropped, and the registry stops sending

    def blob_bytes(self, repository: str, digest: str, limit: int = MAX_METADATA) -> bytes:
        """A small blob (a config) in memory, verified."""
        size = self.blob_size(repository, digest)
        if size is None:
            raise RegistryNotFound(f"registry {self.address} has no blob {digest} in {repository}")
        if size > limit:
            raise RegistryError(f"blob {digest} of {repository} is {size} bytes; metadata over {limit} bytes is refused")
        return b"".join(self.blob(repository, digest, size))

    # -- uploads ----------------------------------------------------------------------

    def push_authorization(self, repositories: Sequence[str]) -> str:
        """The ``Authorization`` value that lets another program push to ``repositories`` (and only there, where
        the registry uses tokens): a token scoped to them, or the Basic credentials; "" for an open registry.
        A secret: hand it on only over a channel as private as the credentials themselves."""
        for repository in repositories:
            check_repository(repository)
        if not self.auth.challenged_yet:
            self.ping()  # a registry that wants credentials says how here (401 and its challenge)
        scope = " ".join(_scope(repository, "pull,push") for repository in repositories)
        return self.auth.header(scope).get("Authorization", "")


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


def _media_type_in(raw: bytes) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        return ""
    return str(document.get("mediaType", "")) if isinstance(document, dict) else ""


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


