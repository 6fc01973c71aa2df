"""htpasswd files for the registry: bcrypt entries only.

The registry accepts only bcrypt in htpasswd files, and bcrypt silently (old
versions) or loudly (bcrypt 5) refuses passwords over 72 bytes: shipper says
so up front instead of storing a hash that cannot be checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import bcrypt

from shipper.errors import ShipperError

BCRYPT_MAX_PASSWORD_BYTES = 72
# The registry checks the password of every request with Basic auth, and keeps nothing: each costs one bcrypt at
# this cost on the registry's CPU. At 10 that was 75 ms here, so a fleet's pulls (7 requests each) queued on their
# site cache's password checks, and anyone could keep a core busy with 13 wrong guesses a second. 5 (2.4 ms) is
# what `htpasswd -B` and distribution's own recipe make; the file is the registry host's root's alone (0600).
BCRYPT_ROUNDS = 5
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")


class HtpasswdError(ShipperError):
    """A user name or password cannot go into an htpasswd file."""


def entry(user: str, password: str) -> str:
    """One ``user:$2b$...`` line (without newline)."""
    if not user or any(c in user for c in ":\n\r") or user.strip() != user:
        raise HtpasswdError(f"user name {user!r} cannot go into htpasswd", hint="use a name without ':', spaces or newlines")
    secret = password.encode()
    if not secret:
        raise HtpasswdError(f"the password for {user} is empty")
    if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
        raise HtpasswdError(
            f"the password for {user} is {len(secret)} bytes; bcrypt uses at most {BCRYPT_MAX_PASSWORD_BYTES}",
            hint="choose a shorter password (a random 32-character one is plenty)",
        )
    digest = bcrypt.hashpw(secret, bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()
    return f"{user}:{digest}"


def render(users: Mapping[str, str]) -> str:
    """A whole htpasswd file for ``users`` (name -> password)."""
    return "".join(entry(user, password) + "\n" for user, password in users.items())


def is_bcrypt_file(text: str) -> bool:
    """True when every non-empty line is ``user:<bcrypt hash>``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return bool(lines) and all(_BCRYPT_HASH.match(line.partition(":")[2]) for line in lines)


def rounds(digest: str) -> int:
    """The cost of a bcrypt hash (``$2b$05$…`` -> 5)."""
    return int(digest.split("$")[2])


def holds(text: str, users: Mapping[str, str]) -> bool:
    """Whether htpasswd ``text`` holds exactly ``users`` with their passwords (at whatever cost)."""
    names = [line.partition(":")[0] for line in text.splitlines() if line.strip()]
    return sorted(names) == sorted(users) and all(check(text, user, password) for user, password in users.items())


def at_current_cost(text: str) -> bool:
    """Whether every entry of htpasswd ``text`` is hashed at today's cost (a registry checks it on every request)."""
    digests = [line.partition(":")[2] for line in text.splitlines() if line.strip()]
    return all(_BCRYPT_HASH.match(d) and rounds(d) == BCRYPT_ROUNDS for d in digests)


def check(text: str, user: str, password: str) -> bool:
    """Whether ``user``/``password`` would log in against htpasswd ``text``."""
    for line in text.splitlines():
        name, _, digest = line.partition(":")
        if name == user and _BCRYPT_HASH.match(digest):
            return bcrypt.checkpw(password.encode(), digest.encode())
    return False
