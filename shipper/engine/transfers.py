"""An engine's transfers: push, pull, save and load, each a stream read within bounds (bounded.py).

Part of ``Engine`` (client.py), kept apart by subject: docker-py builds each request; shipper reads the answer
(its progress messages, bounded in size) and turns what the engine said into shipper's errors.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol

from shipper.engine.containers import EngineCalls, docker_errors
from shipper.engine.messages import Progress, engine_remedy, error_said, explanation, follow, registry_refusal
from shipper.engine.quickget import BadAnswer
from shipper.errors import EngineError
from shipper.platforms import Platform

SAVE_CHUNK = 1 << 20
PLATFORM_SAVE_API = "1.48"


class StreamCalls(EngineCalls, Protocol):
    """What the transfers use besides ``EngineCalls``."""

    def _messages(self, response: Any, action: str) -> Iterator[Any]: ...

    def _stream(self, chunks: Iterator[bytes], action: str) -> Iterator[bytes]: ...

    def require_api(self, version: str, action: str) -> None: ...


def _auth_header(api: Any, repository: str, auth: dict[str, str] | None) -> bytes | None:
    """X-Registry-Auth as docker-py makes it: ``auth``, else the control machine's docker login for that registry
    (None: requests sends no such header)."""
    import docker.auth

    if auth is not None:
        return docker.auth.encode_header(auth)
    registry, _ = docker.auth.resolve_repository_name(repository)
    return docker.auth.get_config_header(api, registry)


class TransferCalls:
    def push(self: "StreamCalls", repository: str, tag: str, auth: dict[str, str] | None, on_progress: Callable[[int], None] | None = None) -> str:
        """Push ``repository:tag`` (credentials go in the X-Registry-Auth header); the manifest digest."""
        digest = ""
        with self.errors(f"push {repository}:{tag}"):
            api: Any = self.api  # docker-py's request, read here within bounds (bounded.py)
            headers = {"X-Registry-Auth": _auth_header(api, repository, auth)}
            response = api._post_json(self._url("/images/{0}/push", repository), None, headers=headers, stream=True, params={"tag": tag})
            stream = self._messages(response, f"push {repository}:{tag}")
            digest = follow(stream, f"push {repository}:{tag} from {self.host.describe()}", on_progress).get("Digest", "")
        if not digest.startswith("sha256:"):
            raise EngineError(f"the engine on {self.host.describe()} pushed {repository}:{tag} but did not say its digest")
        return digest

    def pull(self: "StreamCalls", repository: str, digest: str, auth: dict[str, str] | None, on_progress: Callable[[int], None] | None = None) -> int:
        """Pull ``repository@digest`` (no tag is set); bytes downloaded."""
        progress = Progress(on_progress)
        action = f"pull {repository}@{digest[:19]} on {self.host.describe()}"
        with self.errors(f"pull {repository}@{digest}"):
            try:
                api: Any = self.api  # docker-py's request, read here within bounds (bounded.py)
                headers = {"X-Registry-Auth": _auth_header(api, repository, auth)}
                params = {"tag": digest, "fromImage": repository}
                response = api._post(self._url("/images/create"), params=params, headers=headers, stream=True, timeout=None)
                stream = self._messages(response, f"pull {repository}")
            except docker_errors().APIError as exc:  # refused at once (the engine's first request to the registry failed)
                refusal = registry_refusal(action, explanation(exc))
                if type(refusal) is not EngineError:  # a registry problem shipper can name (TLS, credentials, reach)
                    raise refusal from None
                raise
            follow(stream, action, progress)
        return progress.total

    def save(self: "StreamCalls", image_ids: Iterable[str], platform: Platform | None = None) -> Iterator[bytes]:
        """``GET /images/get?names=…``: one docker-save tar holding all the images, streamed.
        ``platform``: only that platform of each multi-platform image (API 1.48+)."""
        ids = list(image_ids)
        with self.errors(f"save {len(ids)} image(s)"):
            # docker-py's get_image takes a single name; the endpoint takes several.
            api: Any = self.api  # the private helpers every docker-py endpoint uses
            params: dict[str, Any] = {"names": ids}
            url = self._url("/images/get")
            if platform is not None:
                self.require_api(PLATFORM_SAVE_API, f"save one platform ({platform}) of an image")
                params["platform"] = platform.to_api()
                url = self._url("/images/get", version=PLATFORM_SAVE_API)
            response = api._get(url, params=params, stream=True)
            api._raise_for_status(response)
        return self._stream(response.iter_content(SAVE_CHUNK), f"save {len(ids)} image(s)")

    def _stream(self: "StreamCalls", chunks: Iterator[bytes], action: str) -> Iterator[bytes]:
        with self.errors(action):
            yield from chunks

    def load(self: "StreamCalls", chunks: Iterable[bytes | memoryview]) -> list[str]:
        """Stream a docker-save tar into the engine; the names (or IDs) it says it loaded.

        The engine answers with a JSON progress stream that must be read to
        the end: an error arrives as an ``errorDetail`` message, not a status.
        """
        loaded: list[str] = []
        with self.errors("load images"):
            api: Any = self.api  # docker-py's request, read here within bounds (bounded.py)
            response = api._post(self._url("/images/load"), data=iter(chunks), params={"quiet": True}, stream=True)  # a list would be taken for form fields
            for message in self._messages(response, "load"):
                if not isinstance(message, dict):
                    raise BadAnswer("a message of the engine's load is not a JSON object")
                detail = error_said(message)
                if detail is not None:
                    raise EngineError(f"cannot load images on {self.host.describe()}: engine said {detail!r}", hint=engine_remedy(detail, self.host.name))
                for line in str(message.get("stream", "")).splitlines():
                    if line.startswith("Loaded image"):
                        loaded.append(line.split(": ", 1)[1].strip())
        return loaded
