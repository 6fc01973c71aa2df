"""The HTTP side of a registry: TLS, authentication, retries, deadlines, bounded bodies, one origin.

``RegistryHTTP`` sends one request at a time to one registry and turns every
requests exception and every error response into a ShipperError naming the
registry and what was being done (``client.py`` holds the API on top).

- TLS is verified: with ``ca_file``, else the engine convention
  ``/etc/docker/certs.d/<host:port>/ca.crt`` (and ``client.cert``/``client.key``
  there), else the system's CAs. Plain HTTP only for a loopback address or
  with ``insecure``; never a silent downgrade.
- Retries: bounded, for transient failures only (connection resets, 5xx, 429
  with ``Retry-After``), and only for requests whose body can be sent again.
- Credentials stay with the registry's own origin (scheme, host, port): a
  ``Link`` or ``Location`` that points elsewhere is refused, redirects to
  another host lose the ``Authorization`` header (requests), and a token realm
  gets the password only over HTTPS (plain HTTP only when the registry itself
  was named as plain HTTP).
- Every read is bounded: bodies by size (4 MiB of metadata, 64 KiB of an error
  message), requests by a deadline (60 s, longer for a large upload; blobs must
  keep up an average of 16 KiB/s).
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Self
from urllib.parse import urljoin, urlsplit

import requests

from shipper.errors import (
    DigestMismatch,
    RegistryAuthFailed,
    RegistryError,
    RegistryNotFound,
    RegistryNoAnswer,
    RegistryUnreachable,
    ShipperError,
    UsageError,
)
from shipper.registry.auth import Authenticator
from shipper.registry.credentials import Credentials
from shipper.registry.deadline import Deadline, WatchedAdapter
from shipper.registry.kept_cas import kept_ca
from shipper.registry.manifest import MAX_METADATA
from shipper.registry.names import Address

RETRIES = 3
MAX_RETRY_AFTER = 30.0
MAX_ERROR_BODY = 64 << 10  # an error response is read this far, for its message
MAX_REDIRECTS = 5
REQUEST_DEADLINE = 60.0  # seconds for a whole request (headers and a metadata body)
CERTS_D = Path("/etc/docker/certs.d")
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")
PROBE_RECEIVE_BUFFER = 4096  # bytes: see RegistryHTTP.probe_session
MIN_RATE = 16 << 10  # bytes/s a blob or an upload must keep up on average, after REQUEST_DEADLINE's grace

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


class RegistryHTTP:
    """Requests to one registry; see the module docstring."""

    def __init__(
        self, address: Address, credentials: Credentials | None = None, ca_file: str | None = None,
        insecure: bool = False, timeout: float = 30.0, certs_dir: Path | None = None,
    ) -> None:  # fmt: skip
        certs_dir = certs_dir or CERTS_D
        if address.plain_http and not (address.is_loopback or insecure):
            raise UsageError(
                f"refusing plain HTTP to registry {address}: credentials and images would cross the network unprotected",
                hint="use HTTPS (shipper registry up sets it up), or pass --insecure if you really mean it",
            )
        self.address = address
        self.timeout = timeout
        self.retries = RETRIES  # transient failures a request is sent again after (fewer where giving up soon is better)
        verify = self._verify(ca_file, insecure, certs_dir)
        # The CA file this registry's certificate is checked against ("": the system's CAs, or none at all).
        self.ca_source = verify if isinstance(verify, str) and verify != str(SYSTEM_CAS) and not address.plain_http else ""
        client_cert, client_key = certs_dir / address.host / "client.cert", certs_dir / address.host / "client.key"
        self._cert = (str(client_cert), str(client_key)) if not ca_file and client_cert.is_file() and client_key.is_file() else None
        self._verified = verify
        self.session = self._new_session()
        self._probe_session: requests.Session | None = None
        self.auth = Authenticator(str(address), credentials, self._token_get, plain_realm_allowed=address.plain_http)
        self.aborted = False
        self._deadlines: weakref.WeakSet[Deadline] = weakref.WeakSet()  # of this client's requests, to abort them
        self._abort_lock = threading.Lock()

    def abort(self) -> None:
        """End this client's work from another thread (shipper is being interrupted): the request in flight fails
        at once (its sockets shut down), and every request after it fails before it is sent."""
        with self._abort_lock:
            self.aborted = True
            for deadline in list(self._deadlines):
                deadline.expire()

    def _watched(self, deadline: Deadline) -> Deadline:
        with self._abort_lock:
            self._deadlines.add(deadline)
            if self.aborted:
                deadline.expire()
        return deadline

    def _new_session(self, receive_buffer: int | None = None) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy or CA bundle from the environment behind the user's back
        session.headers["User-Agent"] = "shipper"
        session.max_redirects = MAX_REDIRECTS
        for scheme in ("https://", "http://"):
            session.mount(scheme, WatchedAdapter(pool_connections=2, pool_maxsize=8, receive_buffer=receive_buffer))
        session.verify = self._verified
        session.cert = self._cert
        return session

    @property
    def probe_session(self) -> requests.Session:
        """For answers read no further than their headers (a question hung up on): sockets with a small receive
        buffer, so that what the registry sends ahead, and what it reads from its own upstream meanwhile, stays small."""
        if self._probe_session is None:
            self._probe_session = self._new_session(receive_buffer=PROBE_RECEIVE_BUFFER)
        return self._probe_session

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
        kept = kept_ca(self.address.host)  # registry up kept it here, on a machine that is no engine host
        if kept is not None:
            return str(kept)
        return str(SYSTEM_CAS) if SYSTEM_CAS.is_file() else True

    def close(self) -> None:
        self.session.close()
        if self._probe_session is not None:
            self._probe_session.close()

    def __enter__(self) -> Self:
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
                f"registry {self.address} sent {what} pointing to another place ({shown(absolute)}): refused, "
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
        probe: bool = False,
    ) -> requests.Response:  # fmt: skip
        """One request, with authentication and bounded retries of transient failures.

        ``replayable=False``: never sent twice (an upload chunk: after a drop, the caller asks where the upload stands)."""
        url = self._url(path)
        if authenticate:
            url = self._own(url, "a URL")  # the callers check first, with a better name for it; this is the backstop
        attempt = auth_rounds = 0
        while True:
            if self.aborted:
                raise RegistryError(f"registry {self.address}: stopped{' before it could ' + action if action else ''} (shipper is ending)")
            sent_headers = dict(headers or {})
            if authenticate:
                sent_headers.update(self.auth.header(scope))
            deadline = self._watched(Deadline(REQUEST_DEADLINE + len(data or b"") / MIN_RATE).start())
            try:
                with deadline.current():
                    response = (self.probe_session if probe else self.session).request(
                        method, url, params=params, headers=sent_headers, data=data, stream=True, timeout=self.timeout
                    )
                response.shipper_deadline = deadline  # type: ignore[attr-defined]
                if method == "HEAD":  # no body, whatever Content-Length says (the blob's size)
                    deadline.done()
                elif not stream:
                    failed = response.status_code >= 400
                    doing = action or f"answer {method} {shown(url)}"
                    read_body(response, MAX_ERROR_BODY if failed else MAX_METADATA, "an answer", doing, self, truncate=failed)
            except requests.exceptions.SSLError as exc:
                deadline.done()
                if deadline.expired:  # the handshake was cut: by the deadline, or by abort()
                    raise self._too_slow(action or f"answer {method} {shown(url)}", deadline) from None
                raise self._tls_error(exc) from None
            except requests.exceptions.TooManyRedirects:
                deadline.done()
                raise RegistryError(f"registry {self.address} redirected more than {MAX_REDIRECTS} times{' to ' + action if action else ''}") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                deadline.done()
                if deadline.expired:
                    raise self._too_slow(action or f"answer {method} {shown(url)}", deadline) from None
                if replayable and attempt < self.retries:
                    attempt += 1
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise RegistryNoAnswer(
                    f"cannot reach registry {self.address}{' to ' + action if action else ''}: {why(exc)}",
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
                        deadline.done()  # a streamed answer's deadline would otherwise outlive it
                        response.close()
                        continue
            if (response.status_code in (429, 500, 502, 503, 504)) and replayable and attempt < self.retries:
                attempt += 1
                deadline.done()
                time.sleep(_retry_after(response, attempt))
                response.close()
                continue
            return response

    def _too_slow(self, action: str, deadline: Deadline) -> RegistryUnreachable:
        if self.aborted:  # not the registry's doing
            return RegistryNoAnswer(f"registry {self.address}: stopped before it could {action} (shipper is ending)")
        return RegistryNoAnswer(
            f"registry {self.address} did not {action} within {deadline.seconds:.0f} s: it sends too slowly, or stopped sending",
            hint="check the registry and the link to it, then run again",
        )

    def _tls_error(self, exc: Exception) -> RegistryUnreachable:
        where = f"CA {self.ca_source}" if self.ca_source else "the system's CAs"
        return RegistryUnreachable(
            f"the TLS certificate of registry {self.address} cannot be verified with {where}: {why(exc)}",
            hint=f"give the registry's CA with --ca FILE, or install it as {CERTS_D}/{self.address.host}/ca.crt"
            " (shipper registry up keeps the CA of a registry it makes for itself, run from this machine)",
        )

    def _fail(self, response: requests.Response, action: str) -> ShipperError:
        """An error response as a ShipperError saying what was being done."""
        errors: list[dict[str, Any]] = []
        try:
            raw = read_body(response, MAX_ERROR_BODY, "an error message", action, self, truncate=True)
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

    def keep_up(self, deadline: Deadline | None, received: int) -> None:
        """A stream's deadline moves on with what arrived: a slow link is fine, a trickle or a stall is not."""
        if deadline is not None:
            deadline.allow_until(deadline.started + REQUEST_DEADLINE + received / MIN_RATE)


def deadline_of(response: requests.Response) -> Deadline | None:
    return getattr(response, "shipper_deadline", None)


def read_body(response: requests.Response, limit: int, what: str, action: str, client: RegistryHTTP, truncate: bool = False) -> bytes:
    """The body of a streamed response (``what``, read to ``action``), at most ``limit`` bytes, within the request's deadline.

    Over ``limit``: RegistryError, or with ``truncate`` the first ``limit`` bytes.
    The body is kept as the response's content (``.json()`` works on it)."""
    if response._content_consumed:  # type: ignore[attr-defined]
        return response.content[:limit] if truncate else response.content
    deadline = deadline_of(response)
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
        raise RegistryUnreachable(f"registry {client.address} broke off while sending {what} (trying to {action}): {why(exc)}") from None
    finally:
        if deadline is not None:
            deadline.done()
        if len(data) >= limit or not response._content_consumed:  # type: ignore[attr-defined]
            response.close()
    response._content = bytes(data)
    response._content_consumed = True  # type: ignore[attr-defined]
    return bytes(data)


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an absolute URL; ValueError when it has none."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(url)
    return parts.scheme, parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80)


def shown(url: str) -> str:
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


def _retry_after(response: requests.Response, attempt: int) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "")), MAX_RETRY_AFTER)
    except ValueError:
        return 0.2 * 2**attempt


def why(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("certificate verify failed", "Connection refused", "Name or service not known", "timed out", "Connection reset"):
        if marker in text:
            return marker.lower()
    return text[:200]
