"""
Placeholders in config files marked ``"template": true``: ``${env:NAME}``, ``${env:NAME:-default}``
and ``${file:/path}``.

Only these prefixed forms are ours. oslo.config's own interpolation (``$opt``, ``${opt}``,
``${group.opt}``) and its ``$$`` escape pass through untouched; ``$${env:X}`` is left alone too, so
oslo turns it into the literal text ``${env:X}``.

Resolved values are secrets: they are registered with :func:`kolla_entry.log.register_secret`
and never put into an error message (errors name the file, line and placeholder only).
"""

from __future__ import annotations

import re
from typing import Callable, List, Mapping, NamedTuple, Optional, Tuple

from kolla_entry.errors import TemplateError
from kolla_entry.log import register_secret

# `$$` first, so an escaped dollar is consumed before it can start a placeholder. A placeholder
# without its `}` on the same line is matched too, so that a typo is an error, not literal text.
_TOKEN = re.compile(r"\$\$|\$\{(?P<kind>env|file):(?P<body>[^}\n]*)(?P<close>\})?")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Shorter values are not masked in logs: masking "1" or "yes" would garble every line
# (timestamps included) while such values cannot be meaningful secrets.
MIN_SECRET_LENGTH = 4

#: Reads a ``${file:...}`` path; raises OSError or UnicodeDecodeError.
FileReader = Callable[[str], str]


class Rendered(NamedTuple):
    """A rendered text and the number of placeholders resolved in it."""

    text: str
    placeholders: int


#: A Kubernetes Secret holds at most 1 MiB; a bigger ``${file:...}`` (a device, a log) is a mistake.
MAX_SECRET_BYTES = 1024 * 1024


class SecretTooLarge(OSError):
    """A ``${file:...}`` file above :data:`MAX_SECRET_BYTES`."""


def read_secret_file(path: str) -> str:
    """
    The content of a ``${file:...}`` file as UTF-8 text (the default :data:`FileReader`).

    Raises:
        SecretTooLarge: the file holds more than 1 MiB (``/dev/zero`` would never end).
    """
    with open(path, "rb") as handle:
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise SecretTooLarge(0, f"larger than {MAX_SECRET_BYTES // 1024} KiB, more than a Secret can hold")
    return data.decode("utf-8")


def render(
    text: str,
    *,
    source: str,
    environ: Mapping[str, str],
    read_file: FileReader = read_secret_file,
) -> Rendered:
    """
    Replace every ``${env:...}`` / ``${file:...}`` placeholder in ``text``.

    Args:
        text: the template.
        source: the template's path, for error messages.
        environ: where ``${env:NAME}`` values come from.
        read_file: how ``${file:/path}`` is read (content minus one trailing newline).

    Returns:
        The rendered text.

    Raises:
        TemplateError: a placeholder cannot be resolved; names the file, line and placeholder
            (and how many more failed), never a value.
    """
    problems: List[Tuple[int, str, str]] = []
    pieces: List[str] = []
    count = 0
    last = 0
    for match in _TOKEN.finditer(text):
        pieces.append(text[last:match.start()])
        last = match.end()
        if match.group("kind") is None:
            pieces.append(match.group(0))
            continue
        try:
            if match.group("close") is None:
                raise _Unresolved("no closing } on this line")
            value = _resolve(match.group("kind"), match.group("body"), environ, read_file)
        except _Unresolved as err:
            line = text.count("\n", 0, match.start()) + 1
            problems.append((line, match.group(0), err.reason))
            continue
        count += 1
        if len(value) >= MIN_SECRET_LENGTH:
            register_secret(value)
        pieces.append(value)
    if problems:
        line, placeholder, reason = problems[0]
        more = f" (and {len(problems) - 1} more unresolved)" if len(problems) > 1 else ""
        raise TemplateError(f"line {line}: cannot resolve {placeholder}: {reason}{more}", file=source)
    pieces.append(text[last:])
    return Rendered("".join(pieces), count)


class _Unresolved(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _resolve(kind: str, body: str, environ: Mapping[str, str], read_file: FileReader) -> str:
    if "${" in body:
        raise _Unresolved("placeholders cannot be nested")
    if kind == "env":
        return _resolve_env(body, environ)
    return _resolve_file(body, read_file)


def _resolve_env(body: str, environ: Mapping[str, str]) -> str:
    name, sep, default = body.partition(":-")
    if not _ENV_NAME.match(name):
        raise _Unresolved("not a valid environment variable name")
    value: Optional[str] = environ.get(name)
    if sep:
        # Shell semantics of ${NAME:-default}: the default also replaces an empty value.
        return value if value else default
    if value is None:
        raise _Unresolved(f"environment variable {name} is not set")
    return value


def _resolve_file(path: str, read_file: FileReader) -> str:
    if not path.startswith("/"):
        raise _Unresolved("the path must be absolute")
    if "\x00" in path:
        raise _Unresolved("the path contains a NUL character")  # open() would raise ValueError
    try:
        content = read_file(path)
    except FileNotFoundError as err:
        raise _Unresolved("the file does not exist") from err
    except OSError as err:
        raise _Unresolved(f"cannot read the file: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise _Unresolved("the file is not UTF-8 text") from err
    # A Secret written with `echo` or from a YAML block ends in one newline that is not part of it.
    if content.endswith("\r\n"):
        return content[:-2]
    return content[:-1] if content.endswith("\n") else content
