"""A host's Docker engine, reached through docker-py's low-level ``APIClient`` (small GETs behind SSH through
``quickget``, without it); ``connection.connect(host)`` makes one. Every docker-py, requests and paramiko exception
is turned into a ``ShipperError`` here, naming the host.

docker-py is imported when an engine first needs it (``Engine.api``): a survey over SSH never does (#20). Its
exceptions are therefore recognised by the module docker-py loaded, never by importing it."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterator, Mapping

import paramiko

from shipper.engine.info import EngineInfo, ImageDetails, ImageSummary, engine_info, image_details, image_summary
from shipper.engine import streamlocal
from shipper.engine.bounded import json_messages, read_whole
from shipper.engine.containers import ContainerCalls
from shipper.engine.images import ImageCalls
from shipper.engine.messages import engine_remedy, error_message, explanation, why_unreachable
from shipper.engine.quickget import Answer, BadAnswer, EngineRefused, QuickGet
from shipper.engine.transfers import TransferCalls
from shipper.engine.versions import OLDEST_API, is_api_version, version_lt
from shipper.errors import EngineError, EngineUnreachable, ShipperError, SSHError
from shipper.inventory.model import Host
from shipper.transport.ssh import SSHSession

if TYPE_CHECKING:
    import docker

COMMAND_TIMEOUT = 60.0  # seconds; metadata calls. Transfers pass timeout=None (a save can be silent for minutes).


def _read_answer(path: str, answer: Answer, json_body: bool) -> tuple[int, Any, Mapping[str, str]]:
    """A quick channel's answer as ``_get_any`` gives it: an error status other than 404 raised with the engine's
    words; a success's JSON (or text); None for the rest."""
    status, body = answer.status, answer.body
    if status >= 400 and status != 404:
        raise EngineRefused(f"{status} Server Error for {path}", error_message(body))
    if status >= 300:
        return status, None, answer.headers
    if not json_body:
        return status, body.decode(errors="replace"), answer.headers
    try:
        return status, json.loads(body), answer.headers
    except ValueError:
        raise BadAnswer(f"the engine's answer to {path.split('?')[0]} is not JSON") from None


def _engine_said(exc: BaseException) -> str | None:
    """The engine's words when it refused a request (its error answer), else None."""
    if isinstance(exc, EngineRefused):
        return exc.said
    errors = sys.modules.get("docker.errors")  # docker-py raised nothing if it was never loaded
    return explanation(exc) if errors is not None and isinstance(exc, errors.APIError) else None


def _from_docker_py(exc: BaseException) -> bool:
    errors = sys.modules.get("docker.errors")
    return errors is not None and isinstance(exc, errors.DockerException)


class Engine(ImageCalls, TransferCalls, ContainerCalls):
    """A connected engine. Use as a context manager, or call ``close()``.

    ``make_api``: docker-py's client for it, made on first use; ``base_url``: the prefix of its requests' URLs."""

    def __init__(
        self, host: Host, make_api: Callable[[], docker.APIClient], base_url: str, session: SSHSession | None = None,
        quick: QuickGet | None = None, socket: streamlocal.EngineSocket | None = None,
    ) -> None:  # fmt: skip
        self.host = host
        self.base_url = base_url
        self._make_api = make_api
        self._api: docker.APIClient | None = None
        self._api_lock = threading.Lock()
        self.session = session  # the SSH connection behind an ssh:// engine, for diagnostics
        self.quick = quick  # behind SSH, small GETs on a channel of their own (quickget.py); None: docker-py's
        self.socket = socket  # behind SSH, how channels reach the engine's socket
        self.api_version = OLDEST_API  # until connect() agrees on one
        self._info: EngineInfo | None = None
        self._version: dict[str, Any] | None = None  # GET /version as connect() read it, if it did: info() needs it again
        self._server: tuple[str, str] | None = None  # else the API version and product /_ping said
        self.round_trips = 0  # API requests answered since connecting: each one waits a round trip on a far link
        self.last_answer = 0.0  # time.monotonic() of the last answer: a connection that just answered needs no ping

    @property
    def api(self) -> docker.APIClient:
        """docker-py's client, made (and docker-py imported) when first needed, speaking the agreed version."""
        with self._api_lock:
            if self._api is None:
                api = self._make_api()
                api._version = self.api_version  # type: ignore[attr-defined]  # docker-py has no public setter for it
                api.hooks["response"].append(self._answered)
                self._api = api
            return self._api

    def agree(self, version: str, server: dict[str, Any] | None = None, handshake: tuple[str, str] | None = None) -> None:
        """Speak API ``version`` from now on; ``server``: what ``GET /version`` said, or ``handshake``: ``/_ping``'s."""
        self.api_version, self._version, self._server = version, server, handshake
        if self._api is not None:
            self._api._version = version  # type: ignore[attr-defined]

    @property
    def channel(self) -> str:
        """Behind SSH, how requests reach the engine: "streamlocal" (a channel to its socket) or "dial-stdio"."""
        return self.socket.kind if self.socket is not None else ""

    def _answered(self, response: Any, *args: Any, **kwargs: Any) -> None:
        """Every docker-py answer: counted, and read within bounds where docker-py would read it whole."""
        self.round_trips += 1
        self.last_answer = time.monotonic()
        if response is not None and (not kwargs.get("stream") or response.status_code >= 400):  # docker-py reads an error's body whole, too
            read_whole(response)

    def _messages(self, response: Any, action: str) -> Iterator[Any]:
        """A progress stream's JSON messages, read within bounds, once its status says it is one."""
        api: Any = self.api
        api._raise_for_status(response)  # an error's body was read within bounds (_answered)
        return json_messages(response, action)

    @contextlib.contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn what docker-py raises while doing ``action`` into shipper errors."""
        try:
            yield
        except ShipperError:
            raise
        except Exception as exc:
            said = _engine_said(exc)
            if said is not None:
                raise EngineError(f"cannot {action} on {self.host.describe()}: engine said {said!r}", hint=engine_remedy(said, self.host.name)) from None
            if isinstance(exc, BadAnswer):  # it answered, not as an engine does: no retry will mend that
                raise EngineError(
                    f"cannot {action} on {self.host.describe()}: {exc}",
                    hint=f"check that docker_host of {self.host.name} names a Docker (or podman) engine, and that nothing on the way rewrites its answers",
                ) from None
            if isinstance(exc, (paramiko.SSHException, OSError)) or _from_docker_py(exc):  # requests' are OSErrors
                raise self._unreachable(action, exc) from None
            raise

    def _unreachable(self, action: str, exc: BaseException) -> EngineUnreachable:
        endpoint = self.host.engine
        why = why_unreachable(exc)
        hint = {
            "unix": f"is dockerd running on this machine with its socket at {endpoint.url[len('unix://'):]}?",
            "tcp": "is dockerd listening there (dockerd -H tcp://...), and do docker_tls_* match its TLS setup?",
        }.get(endpoint.scheme, "")
        if endpoint.scheme == "ssh" and self.session is not None:
            why, hint = self._diagnose_over_ssh(why)
        return EngineUnreachable(f"cannot {action} on {self.host.describe()}: {why}", hint=hint or None)

    def _diagnose_over_ssh(self, why: str) -> tuple[str, str]:
        """SSH worked but the engine did not answer: ask the host's docker CLI why."""
        assert self.session is not None
        try:
            result = self.session.run("docker version --format '{{.Server.Version}}'", timeout=20)
        except SSHError as exc:
            return f"{why} ({exc.message})", "is the host up and sshd running?"
        if result.exit_status == 127:
            return "the docker CLI is not installed there", "install docker (the CLI runs 'docker system dial-stdio' for shipper)"
        if not result.ok:
            return (
                f"its engine is not answering: {result.first_error_line()}",
                "start dockerd on that host (systemctl start docker), or set docker_host if it listens elsewhere",
            )
        return why, "the engine answers its local CLI; check that the SSH user may use the docker socket"

    @contextlib.contextmanager
    def without_timeout(self) -> Iterator["Engine"]:
        """For a transfer (push, pull) on a connection made for quick calls: no read timeout while it runs."""
        api: Any = self.api  # docker-py types its timeout as int, but None (no timeout) is what it passes on to requests
        before, api.timeout = api.timeout, None
        try:
            yield self
        finally:
            api.timeout = before

    def _get(self, url: str, params: dict[str, Any] | None = None, json_body: bool = True, shape: type = dict) -> tuple[int, Any]:
        """``GET url`` (docker-py's URL for it): its status and its JSON (or text) when it succeeded; an error status
        other than 404 raises the ``APIError`` docker-py would; JSON of another ``shape`` (an object, a list) than
        asked for is a ``BadAnswer``. Small answers only: on the quick channel behind SSH, else through docker-py."""
        status, answer, _ = self._get_any(url, params, json_body)
        if json_body and status == 200 and not isinstance(answer, shape):
            raise BadAnswer(f"the engine's answer to {url[len(self.base_url):]} is not a JSON {'list' if shape is list else 'object'}")
        return status, answer

    def _get_any(self, url: str, params: dict[str, Any] | None, json_body: bool) -> tuple[int, Any, Mapping[str, str]]:
        """Status, body (JSON, text or None) and headers (looked up in lower case)."""
        quick = self.quick  # once: another thread may find the channel refused and set it to None meanwhile
        if quick is not None:
            path = self._path(url, params)
            try:
                answer = quick.get(path)
            except streamlocal.Unavailable:
                self.quick = None  # dial-stdio on this host: docker-py's connections, as for everything else
            else:
                self._answered(None)
                return _read_answer(path, answer, json_body)
        api: Any = self.api  # the private helpers every docker-py endpoint uses
        response = api._get(url, params=params)
        headers = {name.lower(): value for name, value in response.headers.items()}
        if response.status_code == 404:
            return 404, None, headers
        return response.status_code, api._result(response, json=json_body), headers

    def _path(self, url: str, params: dict[str, Any] | None = None) -> str:
        return url[len(self.base_url):] + (f"?{urllib.parse.urlencode(params)}" if params else "")

    def _pipelined(self, requests: list[tuple[str, str, dict[str, Any] | None]]) -> list[tuple[int, Any]] | None:
        """``(method, url, params)`` requests without a body, written at once on the quick channel and answered in
        order (one round trip for all): each answer's status and JSON, as ``_get`` reads them. None where there is
        no quick channel (the caller asks one at a time)."""
        quick = self.quick
        if quick is None:
            return None
        paths = [(method, self._path(url, params)) for method, url, params in requests]
        try:
            answers = quick.exchange(paths)
        except streamlocal.Unavailable:
            self.quick = None
            return None
        self._answered(None)
        read = []
        for (method, path), answer in zip(paths, answers):
            status, body, _ = _read_answer(path, answer, json_body=method == "GET")
            read.append((status, body))
        return read

    def inspect_images(self, references: list[str], info: bool = False) -> list[ImageDetails | None]:
        """``inspect_image`` of each (tag or ID), in one round trip where the channel allows; ``info``: ``info()``
        read in the same round trip, where it has not been read yet."""
        if not references:
            return []
        requests: list[tuple[str, str, dict[str, Any] | None]] = [("GET", self._url("/images/{0}/json", r), None) for r in references]
        with_info = info and self._info is None and (self._version is not None or self._server is not None)
        with self.errors(f"inspect {len(references)} image(s)"):
            answers = self._pipelined(requests + ([("GET", self._url("/info"), None)] if with_info else []))
            for reference, (status, found) in zip(references, answers or ()):
                if status == 200 and not isinstance(found, dict):
                    raise BadAnswer(f"the engine's answer to the inspection of {reference} is not a JSON object")
            if answers is not None and with_info:
                self._info = self._info_from(answers.pop()[1])
        if answers is None:
            return [self.inspect_image(r) for r in references]
        return [image_details(found) if status == 200 and found else None for status, found in answers]

    def _info_from(self, info: Any) -> EngineInfo:
        if not isinstance(info, dict):
            raise BadAnswer("the engine's info is not a JSON object")
        return engine_info(self._version or {}, info, self.api_version, self._server)

    def images_and_info(self) -> list[ImageSummary]:
        """``images()``, with ``info()`` read in the same round trip where it has not been read yet."""
        if self._info is not None or self._version is None and self._server is None:
            return self.images()  # info() read already, or it needs /version too: one at a time
        with self.errors("list images"):
            answers = self._pipelined([("GET", self._url("/images/json"), {"only_ids": 0, "all": 0}), ("GET", self._url("/info"), None)])
            if answers is None:
                return self.images()
            (_, found), (_, info) = answers
            if not isinstance(found, list):
                raise BadAnswer("the engine's image list is not a JSON list")
            self._info = self._info_from(info)
        return [image_summary(raw) for raw in found]

    def _url(self, path: str, *args: str, version: str | None = None) -> str:
        """docker-py's URL for ``path`` (its arguments quoted as it quotes them), at the agreed API version or ``version``."""
        quoted = path.format(*(urllib.parse.quote(arg, safe="/:") for arg in args))
        return f"{self.base_url}/v{version or self.api_version}{quoted}"

    def version(self) -> dict[str, Any]:
        """``GET /version`` (unversioned: asked before any version is agreed)."""
        status, answer = self._get(f"{self.base_url}/version")
        if status != 200 or not isinstance(answer, dict):
            raise EngineRefused(f"{status} for /version", "the engine did not say its version")
        said = answer.get("ApiVersion", OLDEST_API)
        if not isinstance(said, str) or not is_api_version(said):
            raise BadAnswer(f"the engine's API version {str(said)[:40]!r} is not a version")
        return answer

    def handshake(self) -> tuple[str, str] | None:
        """``GET /_ping``: the API version the engine speaks and what it is ("docker", "podman"), from the headers
        every engine since API 1.25 sends with it; None where they say no version (``version()`` then).

        Cheaper for the host than ``/version``, for which dockerd runs ``runc --version`` and ``docker-init
        --version``: 8 ms of its CPU, on every host of a fleet, at each connection."""
        status, _, headers = self._get_any(f"{self.base_url}/_ping", None, json_body=False)
        if status != 200:
            raise EngineRefused(f"{status} for /_ping", f"/_ping answered {status}")
        said = headers.get("api-version", "")
        if not said:
            return None
        if not is_api_version(said):
            raise BadAnswer(f"the engine's API version {said[:40]!r} is not a version")
        podman = "libpod-api-version" in headers or headers.get("server", "").startswith("Libpod/")
        return said, "podman" if podman else "docker"

    def ping(self) -> float:
        """Seconds for one ``/_ping`` round trip."""
        with self.errors("ping the engine"):
            start = time.perf_counter()
            status, _ = self._get(f"{self.base_url}/_ping", json_body=False)
            if status != 200:
                raise EngineRefused(f"{status} for /_ping", f"/_ping answered {status}")
            return time.perf_counter() - start

    def info(self) -> EngineInfo:
        """Version, API version, image store, OS/arch of the engine (read once per connection: planning asks often)."""
        if self._info is None:
            with self.errors("read engine info"):
                _, info = self._get(self._url("/info"))
                if self._version is None and self._server is None:
                    self._version = self.version()
                self._info = engine_info(self._version or {}, info or {}, self.api_version, self._server)
        return self._info

    def supports_api(self, version: str) -> bool:
        return not version_lt(self.info().api_version, version)

    def require_api(self, version: str, action: str) -> None:
        if not self.supports_api(version):
            info = self.info()
            raise EngineError(
                f"cannot {action} on {self.host.describe()}: its engine ({info.product} {info.version}, API {info.api_version}) "
                f"does not take a platform there (API {version} does: Docker 28 or later)",
                hint=f"upgrade the engine on {self.host.name}, or move without --platform: the engine then saves the platform it picks by default",
            )

    def close(self) -> None:
        """Release the HTTP pools and the SSH connection."""
        if self.quick is not None:
            self.quick.close()
        if self._api is not None:
            self._api.close()
        if self.session is not None:
            self.session.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
