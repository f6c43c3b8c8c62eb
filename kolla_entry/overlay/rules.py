"""
What an overlay cannot serve (pure): such a change makes its patch a ``conflict`` in overlay mode.

The overlay reaches the service only through imports (:mod:`kolla_entry.overlay.hook`), so a file
read some other way would keep the image's content while the report says ``applied``: a silent
partial fix. Neighbours: :mod:`kolla_entry.overlay.apply` applies these rules to the planned reports.
"""

from __future__ import annotations

from typing import Optional

_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".data", ".egg-link")
_EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")


def unservable(rel: str) -> Optional[str]:
    """
    Why a change to ``rel`` (relative to site-packages) cannot be served from an overlay, or None.
    """
    parts = rel.split("/")
    if len(parts) == 1 and rel.endswith(".pth"):
        return "a .pth file is read by Python's site module before the overlay hook runs"
    if len(parts) == 1 and not rel.endswith(".py"):
        return "a file at the top of site-packages that is not a module is not read through imports"
    if parts[0].endswith(_METADATA_SUFFIXES):
        return "package metadata (entry points, RECORD) is read from the image's site-packages, not imported"
    if rel.endswith(_EXTENSION_SUFFIXES):
        return "a compiled extension cannot be redirected to an overlay"
    if "__pycache__" in parts:
        return "bytecode is derived from the sources, never patched"
    return None
