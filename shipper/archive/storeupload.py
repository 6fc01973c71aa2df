"""The program shipper runs on a source host to upload images from its engine's layer store into a registry.

    python3 -c "$(LOADER)"
    then, on its stdin: this program (``script()``), then SPEC_JSON on one line (an empty line: no work)

It starts before shipper has planned, and finds the engine's store meanwhile.

Why: ``docker push`` gzips every layer before its first byte goes up (most of
a push's time on a fast link). The store holds each layer's tar exactly
(layerstore.py); it goes up uncompressed, as OCI allows, under its diff ID,
so "already there" is a HEAD away (the control machine asks, and lists here
only what is missing). The bytes cross the network once, from the source to
the registry, never through the machine running shipper.

Trust: the registry checks every blob against its digest as it arrives and
refuses one that differs, so the layers are not hashed here (a layer changed
while read is refused there, and no manifest names it). The program sends
only to the registry's own origin: an upload location elsewhere is refused.
The ``Authorization`` header comes on stdin (never in argv): a token scoped to
pushing these repositories, or the Basic credentials a Basic-auth registry
takes (which the engine's own push would be given too).

SPEC: {"registry": {"url": "https://host:port", "cadata": "PEM or empty", "insecure": false},
       "authorization": "Bearer …" | "Basic …" | "",
       "images": {image ID: [diff IDs]},
       "blobs": [{"digest": d, "repository": "team/app"}, …],   (the missing ones: layers and configs)
       "workers": 3}
stdout: {"available": true, "sizes": {digest: size of every layer and config}, "uploaded": {digest: bytes},
         "errors": {digest: "what failed"}}, or {"available": false, "reason": "…"} when the store cannot be
read here (nothing was sent). Progress on stderr: {"progress": {"b": bytes}} lines. Standard library only.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

from shipper.archive.layers import chain_ids
from shipper.archive.layerstore import LayerStore
from shipper.archive.lifeline import stop_when_shipper_is_gone
from shipper.archive.savestream import ArchiveError

LOADER = "import sys; exec(compile(sys.stdin.buffer.read({size}), 'shipper-storeupload', 'exec'))"
TIMEOUT = 60.0  # seconds without progress on one socket operation
MAX_ANSWER = 64 << 10  # a registry's answer to an upload: headers and a short JSON error, never more
PROGRESS_INTERVAL = 0.5


class UploadError(Exception):
    pass


class Registry:
    """Requests to one registry origin, each on a connection of its own (one per upload thread)."""

    def __init__(self, url: str, cadata: str, insecure: bool, authorization: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UploadError(f"not a registry URL: {url!r}")
        self.url = url.rstrip("/")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.authorization = authorization
        self.context: Optional[ssl.SSLContext] = None
        if self.scheme == "https":
            self.context = ssl.create_default_context(cadata=cadata or None)
            if insecure:
                self.context.check_hostname = False
                self.context.verify_mode = ssl.CERT_NONE

    def connection(self) -> http.client.HTTPConnection:
        if self.context is not None:
            return http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT, context=self.context)
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)

    def own(self, location: str) -> str:
        """``location`` resolved against the registry: only on its own origin (path and query returned)."""
        absolute = urlsplit(urljoin(self.url + "/", location))
        if (absolute.scheme, absolute.hostname, absolute.port or (443 if absolute.scheme == "https" else 80)) != (self.scheme, self.host, self.port):
            raise UploadError(f"the registry sent an upload location on another origin ({absolute.scheme}://{absolute.hostname}): refused")
        return absolute.path + ("?" + absolute.query if absolute.query else "")

    def redact(self, text: str) -> str:
        """``text`` (a registry's answer, in an error) without the credentials, should a hostile registry echo them."""
        scheme, _, credential = self.authorization.partition(" ")
        secrets = [credential] if credential else []
        if scheme.lower() == "basic" and credential:
            try:
                secrets.append(base64.b64decode(credential).decode(errors="replace").partition(":")[2])
            except ValueError:
                pass
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def headers(self, extra: Dict[str, str]) -> Dict[str, str]:
        found = {"User-Agent": "shipper", **extra}
        if self.authorization:
            found["Authorization"] = self.authorization
        return found

    def upload(self, repository: str, digest: str, size: int, chunks: Iterator[bytes], sent: List[int]) -> None:
        """POST an upload, then PUT the whole blob in one request (its length known before its first byte)."""
        connection = self.connection()
        try:
            connection.request("POST", f"/v2/{repository}/blobs/uploads/", headers=self.headers({"Content-Length": "0"}))
            answer = connection.getresponse()
            body = answer.read(MAX_ANSWER)
            if answer.status != 202:
                raise UploadError(f"starting the upload answered {answer.status}: {body[:300].decode(errors='replace')}")
            location = self.own(answer.getheader("Location") or "")
            location += ("&" if "?" in location else "?") + "digest=" + digest

            def counted() -> Iterator[bytes]:
                for chunk in chunks:
                    sent[0] += len(chunk)
                    yield chunk

            headers = self.headers({"Content-Type": "application/octet-stream", "Content-Length": str(size)})
            connection.request("PUT", location, body=counted(), headers=headers, encode_chunked=False)
            answer = connection.getresponse()
            body = answer.read(MAX_ANSWER)
            if answer.status != 201:
                raise UploadError(f"the registry answered {answer.status}: {body[:300].decode(errors='replace')}")
            confirmed = answer.getheader("Docker-Content-Digest") or digest
            if confirmed != digest:
                raise UploadError(f"the registry stored {confirmed}, not {digest}")
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            raise UploadError(f"{type(exc).__name__}: {exc}") from None
        finally:
            connection.close()


def _contents(store: LayerStore, images: Dict[str, List[str]]) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """digest -> how to read it (a layer's chain ID and diff ID, or a config's bytes), and every blob's size."""
    readers: Dict[str, Any] = {}
    sizes: Dict[str, int] = {}
    for image_id, diff_ids in images.items():
        config = store.config(image_id)
        readers[image_id], sizes[image_id] = config, len(config)
        for diff_id, chain in zip(diff_ids, chain_ids(diff_ids)):
            if diff_id not in readers:
                readers[diff_id] = (chain, diff_id)
                sizes[diff_id] = store.layer_size(chain, diff_id)
    return readers, sizes


def run(spec: Dict[str, Any], store: Optional[LayerStore], why: str) -> Dict[str, Any]:
    images = {str(k): [str(d) for d in v] for k, v in spec["images"].items()}
    if store is None:
        return {"available": False, "reason": why}
    try:
        readers, sizes = _contents(store, images)
    except (OSError, ArchiveError) as exc:
        return {"available": False, "reason": str(exc)}
    where = spec["registry"]
    registry = Registry(str(where["url"]), str(where.get("cadata") or ""), bool(where.get("insecure")), str(spec.get("authorization") or ""))
    blobs = [(str(b["digest"]), str(b["repository"])) for b in spec["blobs"]]
    counters = {digest: [0] for digest, _ in blobs}
    errors: Dict[str, str] = {}
    uploaded: Dict[str, int] = {}

    def one(blob: Tuple[str, str]) -> None:
        digest, repository = blob
        reader = readers.get(digest)
        try:
            if reader is None:
                raise UploadError(f"{digest} is not a layer or config of the images named")
            if isinstance(reader, bytes):
                size, chunks = len(reader), iter([reader])
            else:
                size, chunks = store.layer_content(reader[0], reader[1], verify=False)
            registry.upload(repository, digest, size, chunks, counters[digest])
            uploaded[digest] = size
        except (UploadError, ArchiveError, OSError) as exc:
            errors[digest] = registry.redact(str(exc))

    done = threading.Event()

    def report() -> None:
        while not done.wait(PROGRESS_INTERVAL):
            _progress(sum(c[0] for c in counters.values()))

    threading.Thread(target=report, daemon=True).start()
    # Biggest first: the longest upload starts at once and the others fill in beside it.
    ordered = sorted(blobs, key=lambda b: -sizes.get(b[0], 0))
    with ThreadPoolExecutor(max_workers=max(1, min(int(spec.get("workers") or 3), 8))) as pool:
        list(pool.map(one, ordered))
    done.set()
    _progress(sum(c[0] for c in counters.values()))
    return {"available": True, "sizes": sizes, "uploaded": uploaded, "errors": errors}


def _progress(total: int) -> None:
    sys.stderr.write(json.dumps({"progress": {"b": total}}) + "\n")
    sys.stderr.flush()


def main() -> None:
    store, why = LayerStore.of_local_engine()  # while shipper still plans
    line = sys.stdin.buffer.readline().decode().strip()
    if not line:
        sys.exit(0)
    stop_when_shipper_is_gone()
    started = time.monotonic()
    outcome = run(json.loads(line), store, why)
    outcome["seconds"] = round(time.monotonic() - started, 3)
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()
    os._exit(0)  # the stdin watcher is still blocked in its read


PROGRAM_MODULES = ("layers", "tarheader", "savestream", "layerstore", "lifeline", "storeupload")


def script() -> str:
    """This program and the modules it needs, as one self-contained script (standard library only)."""
    from shipper.archive.boot import program_script  # here, not at the top: the program as sent has no boot module

    return program_script(PROGRAM_MODULES, "storeupload")


if __name__ == "__main__":
    main()
