"""Rendering a playbook's string values with Jinja2: sandboxed, undefined variables are errors.

Values are rendered after the YAML is parsed, one string at a time, so what a
variable holds can never become YAML structure.
"""

from __future__ import annotations

from typing import Any

import jinja2
import jinja2.sandbox

from shipper.errors import Origin
from shipper.playbook.model import PlaybookError

_ENV = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def render(value: Any, context: dict[str, Any], origin: Origin, step: str) -> Any:
    """``value`` with every string in it rendered against ``context``."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            return _ENV.from_string(value).render(context)
        except jinja2.UndefinedError as exc:
            raise PlaybookError(f"{origin}, step {step!r}: {exc.message} in {value!r}", hint="define it under vars:, in the inventory, or with -e KEY=VALUE") from None
        except jinja2.TemplateError as exc:
            raise PlaybookError(f"{origin}, step {step!r}: template error in {value!r}: {exc}") from None
    if isinstance(value, list):
        return [render(v, context, origin, step) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, origin, step) for k, v in value.items()}
    return value


def render_vars(variables: dict[str, Any], extra: dict[str, str], origin: Origin) -> dict[str, Any]:
    """The playbook's vars, each rendered against -e and the vars before it; -e wins."""
    rendered: dict[str, Any] = {}
    for key, value in variables.items():
        rendered[key] = render(value, {**rendered, **extra}, origin, "vars")
    return {**rendered, **extra}
