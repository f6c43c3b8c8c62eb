"""
The patch engine: ``discover -> parse -> plan (relevance, match, reverse, view) -> compilecheck -> pycache
(bytecode) -> transaction (confine, journal) -> report / state``.

The compile check's code becomes each patched module's ``.pyc`` (issue #13), committed in the same
transaction as the source. An apply does not wait for the check's workers: the transaction stages
while they compile and takes their verdict before its swap.

Everything before the transaction only reads, so :func:`check_patches` is "plan, then report";
:func:`apply_patches` commits the plan all or nothing. The entry points are loaded lazily: a pod start
with no patch file imports none of the engine (``tests/test_imports.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PatchRequest", "apply_patches", "check_patches"]

if TYPE_CHECKING:
    from kolla_entry.patching.engine import PatchRequest, apply_patches, check_patches


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kolla_entry.patching import engine

        return getattr(engine, name)
    raise AttributeError(name)
