"""Answering a registry's ``WWW-Authenticate`` challenge: HTTP Basic, or the Bearer token flow.

Bearer (distribution's token auth): the registry names a token service
(``realm``), a ``service`` and the ``scope`` the request needs; the token
service, given the credentials as Basic auth (or none, for anonymous pulls),
answers with a token valid for ``expires_in`` seconds. Tokens are kept per
scope and fetched again shortly before they expire, or when the registry
refuses one.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Callable

import requests

from shipper.errors import RegistryAuthFailed, RegistryError
from shipper.registry.credentials import Credentials

_PARAM = re.compile(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
EXPIRY_MARGIN = 10.0  # seconds: fetch a new token this long before the old one expires
DEFAULT_EXPIRY = 60.0  # the token spec's default when expires_in is absent
MAX_EXPIRY = 24 * 3600.0  # a token service's "expires_in" is believed up to a day


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Gives the ``Authorization`` header for a request's scope, learning the scheme from challenges."""

    def __init__(
        self, registry: str, credentials: Credentials | None, get: Callable[..., requests.Response], plain_realm_allowed: bool = False
    ) -> None:
        """``plain_realm_allowed``: the registry itself was named as plain HTTP, so its token service may be too."""
        self.registry = registry
        self.plain_realm_allowed = plain_realm_allowed
        self.credentials = credentials
        self._get = get  # the client's own GET (same TLS settings and retries)
        self._challenge: Challenge | None = None
        self._tokens: dict[str, _Token] = {}
        self._refetched: set[str] = set()
        self.fetched = 0  # tokens fetched so far

    @property
    def challenged_yet(self) -> bool:
        """The registry has said how it wants credentials (or there was no request yet)."""
        return self._challenge is not None

    def header(self, scope: str) -> dict[str, str]:
        """The header to send for ``scope`` (empty until a challenge has been seen)."""
        if self._challenge is None:
            return {}
        if self._challenge.scheme == "basic":
            return {"Authorization": f"Basic {self._need_credentials().basic()}"} if self.credentials else {}
        token = self._tokens.get(scope)
        if token is None or token.expires - EXPIRY_MARGIN < time.monotonic():
            token = self._tokens[scope] = self._fetch_token(scope)
        return {"Authorization": f"Bearer {token.value}"}

    def challenged(self, header: str, scope: str, had_auth: bool) -> bool:
        """A 401 arrived with ``header``: True when a retry with (new) credentials makes sense."""
        challenge = parse_challenge(header)
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            raise RegistryError(f"registry {self.registry} asks for an authentication scheme shipper does not know: {header[:100]!r}")
        first = self._challenge is None or self._challenge.scheme != challenge.scheme
        self._challenge = challenge
        if challenge.scheme == "basic":
            if had_auth or self.credentials is None:
                raise self._refused()
            return True
        if had_auth and not first:
            if scope in self._refetched:
                raise self._refused()
            self._tokens.pop(scope, None)  # refused: perhaps expired early; one fresh token, then give up
            self._refetched.add(scope)
        return True

    def _need_credentials(self) -> Credentials:
        if self.credentials is None:
            raise self._refused()
        return self.credentials

    def _refused(self) -> RegistryAuthFailed:
        if self.credentials is None:
            return RegistryAuthFailed(
                f"registry {self.registry} wants credentials, and shipper has none for it",
                hint=f"run shipper registry login {self.registry} (or docker login), or give --username and --password-file",
            )
        return RegistryAuthFailed(
            f"registry {self.registry} refused user {self.credentials.username!r} (credentials from {self.credentials.source or 'the command'})",
            hint=f"check the username and password; shipper registry login {self.registry} replaces stored ones",
        )

    def _fetch_token(self, scope: str) -> _Token:
        assert self._challenge is not None
        realm = self._challenge.params.get("realm")
        if not realm or not realm.startswith(("https://", "http://")):
            raise RegistryError(f"registry {self.registry} sent a Bearer challenge without a usable realm")
        if realm.startswith("http://") and not self.plain_realm_allowed:
            # The token service gets the password: never in clear text, unless the user chose plain HTTP for this registry.
            raise RegistryError(
                f"registry {self.registry} wants credentials sent to a token service over plain HTTP ({realm.split('?')[0][:100]}): refused",
                hint="the registry's token service must use HTTPS; name the registry as http://HOST:PORT only if you accept plain HTTP",
            )
        params = {k: v for k, v in (("service", self._challenge.params.get("service")), ("scope", scope)) if v}
        if self.credentials is not None:
            params["account"] = self.credentials.username
        headers = {"Authorization": f"Basic {self.credentials.basic()}"} if self.credentials else {}
        response = self._get(realm, params=params, headers=headers)
        if response.status_code in (401, 403):
            raise self._refused()
        if response.status_code != 200:
            raise RegistryError(f"the token service of {self.registry} answered {response.status_code}")
        try:
            data = response.json()
            value = str(data.get("token") or data.get("access_token"))
            lifetime = float(data.get("expires_in") or DEFAULT_EXPIRY)
            lifetime = min(max(lifetime, 0.0), MAX_EXPIRY) if math.isfinite(lifetime) else DEFAULT_EXPIRY
        except (ValueError, AttributeError, TypeError, OverflowError):
            raise RegistryError(f"the token service of {self.registry} sent no token") from None
        if value in ("", "None"):
            raise RegistryError(f"the token service of {self.registry} sent no token")
        self.fetched += 1
        return _Token(value, time.monotonic() + lifetime)
