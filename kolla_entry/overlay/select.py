"""
Choosing overlay mode (issue #16): asked for, or needed because the image cannot be written.

``--overlay DIR`` > ``KOLLA_ENTRY_OVERLAY`` > the default overlay folder when the target is not
writable and that folder is mounted. Neighbours: ``kolla_entry.start.runner`` and the CLI call this.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Optional

from kolla_entry.constants import DEFAULT_OVERLAY, ENV_OVERLAY

if TYPE_CHECKING:
    from _typeshed import StrPath


def choose_overlay(explicit: Optional[str], environ: Mapping[str, str], target: Optional[StrPath], *,
                   default: str = DEFAULT_OVERLAY) -> Optional[str]:
    """
    The overlay folder to serve patches from, or None to patch the target in place.

    Strings in and out: a start without patches calls this and never needs pathlib (issue #13).

    Args:
        explicit: ``--overlay``.
        environ: where ``KOLLA_ENTRY_OVERLAY`` is read (without path variables under sudo).
        target: the image site-packages, when known: a read-only one selects the mounted default.
        default: the default overlay folder.
    """
    chosen = explicit or environ.get(ENV_OVERLAY)
    if chosen:
        return chosen
    if target is not None and not os.access(target, os.W_OK) and os.path.isdir(default):
        return default
    return None
