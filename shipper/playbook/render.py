"""Rendering a playbook's string values with Jinja2: sandboxed, undefined variables are errors.

Values are rendered after the YAML is parsed, one string at a time, so what a
variable holds can never become YAML structure.

A playbook is input like any other: each value's rendering is bounded in size
(1 MiB of output; ``*`` and ``**`` refused where their result would be huge)
and in time (5 s, where the platform lets a timer interrupt it: the main thread).
"""

from __future__ import annotations

import contextlib
import json
import re
import math
import signal
import threading
from typing import Any, Iterator

import jinja2
import jinja2.sandbox

from shipper.errors import Origin
from shipper.yamlfile import Unsafe
from shipper.playbook.model import PlaybookError

MAX_RENDERED = 1 << 20  # characters one value may render to
RENDER_SECONDS = 5.0
MAX_BITS = 1 << 16  # a number computed in a template stays below 2**65536


class _Bounds(Exception):
    """A template went past a bound."""


class _BoundedSandbox(jinja2.sandbox.SandboxedEnvironment):
    """Jinja2's sandbox, with the operators that can build huge values checked first."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _bits(left) * _magnitude(right) > MAX_BITS:
            raise _Bounds(f"{_short(left)} ** {_short(right)} is too large a number")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_RENDERED:
                    raise _Bounds(f"repeating a value {times} times makes it over {MAX_RENDERED} long")
            if _bits(left) + _bits(right) > MAX_BITS:
                raise _Bounds("too large a number")
        return super().call_binop(context, operator, left, right)


def _bits(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return math.log2(abs(value) + 1) if isinstance(value, float) else abs(value).bit_length()


def _magnitude(value: Any) -> float:
    return abs(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 40 else text[:37] + "..."


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt what runs inside after ``seconds`` (a timer signal: the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise _Bounds(f"rendering took over {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _render_bounded(template: jinja2.Template, context: dict[str, Any]) -> str:
    out: list[str] = []
    size = 0
    with _time_limit(RENDER_SECONDS):
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_RENDERED:
                raise _Bounds(f"it renders to over {MAX_RENDERED} characters")
            out.append(piece)
    return "".join(out)


_ENV = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def parse(text: str) -> Any:
    """A template's syntax tree (to find the names it uses)."""
    return _ENV.parse(text)


def render(value: Any, context: dict[str, Any], origin: Origin, step: str) -> Any:
    """``value`` with every string in it rendered against ``context``."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value or isinstance(value, Unsafe):  # !unsafe: never a template
            return value
        try:
            return _render_bounded(_ENV.from_string(value), context)
        except jinja2.UndefinedError as exc:
            raise PlaybookError(f"{origin}, step {step!r}: {exc.message} in {value!r}", hint="define it under vars:, in the inventory, or with -e KEY=VALUE") from None
        except jinja2.TemplateError as exc:
            raise PlaybookError(f"{origin}, step {step!r}: template error in {_short(value)}: {exc}") from None
        except _Bounds as exc:
            raise PlaybookError(f"{origin}, step {step!r}: {_short(value)} is refused: {exc}", hint="templates render names and values, not computations") from None
        except (ArithmeticError, ValueError, TypeError, LookupError, RecursionError, MemoryError) as exc:
            raise PlaybookError(f"{origin}, step {step!r}: {_short(value)} fails to render: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(value, list):
        return [render(v, context, origin, step) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, origin, step) for k, v in value.items()}
    return value


_SINGLE = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.S)


def render_native(value: Any, context: dict[str, Any], origin: Origin, step: str) -> Any:
    """As ``render``, but a value that is one ``{{ expression }}`` gives the expression's own type (a list stays a list)."""
    match = _SINGLE.match(value) if isinstance(value, str) and not isinstance(value, Unsafe) else None
    if match is None or "{{" in match.group(1) or "}}" in match.group(1):
        return render(value, context, origin, step)
    text = render("{{ (" + match.group(1) + ") | tojson }}", context, origin, step)
    try:
        return json.loads(text)
    except ValueError:
        return render(value, context, origin, step)


def holds(conditions: tuple[str, ...], context: dict[str, Any], origin: Origin, step: str) -> bool:
    """Whether every ``when:`` condition is true in ``context`` (Ansible's: Jinja expressions, no braces)."""
    for condition in conditions:
        if render("{% if (" + condition + ") %}1{% endif %}", context, origin, step) != "1":
            return False
    return True


def render_vars(variables: dict[str, Any], extra: dict[str, str], origin: Origin) -> dict[str, Any]:
    """The playbook's vars, each rendered against -e and the vars before it; -e wins."""
    rendered: dict[str, Any] = {}
    for key, value in variables.items():
        rendered[key] = render(value, {**rendered, **extra}, origin, "vars")
    return {**rendered, **extra}
