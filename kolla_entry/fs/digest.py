"""
SHA-256 of what kolla-entry writes, for the state file.

``hashlib`` loads OpenSSL on import, about a twentieth of a pod start (issue #7); CPython's own
built-in SHA-256 module gives the same digest without it. ``hashlib`` stays the fallback.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable


def _sha256_constructor() -> Callable[[bytes], Any]:
    for name in ("_sha2", "_sha256"):  # CPython >= 3.12, CPython <= 3.11
        try:
            constructor: Callable[[bytes], Any] = importlib.import_module(name).sha256
            return constructor
        except (ImportError, AttributeError):
            continue
    from hashlib import sha256

    return sha256


_SHA256 = _sha256_constructor()


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 hex digits."""
    return str(_SHA256(data).hexdigest())
