"""
Choosing overlay mode (issue #16): asked for, or needed because the image cannot be written.

``--overlay DIR`` > ``KOLLA_ENTRY_OVERLAY`` > the default overlay folder when the target is not
writable and that folder is mounted. Neighbours: ``kolla_entry.start.runner`` and the CLI call this.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from kolla_entry.constants import DEFAULT_OVERLAY, ENV_OVERLAY


def choose_overlay(explicit: Optional[str], environ: Mapping[str, str], target: Optional[Path], *,
                   default: str = DEFAULT_OVERLAY) -> Optional[Path]:
    """
    The overlay folder to serve patches from, or None to patch the target in place.

    Args:
        explicit: ``--overlay``.
        environ: where ``KOLLA_ENTRY_OVERLAY`` is read (without path variables under sudo).
        target: the image site-packages, when known: a read-only one selects the mounted default.
        default: the default overlay folder.
    """
    chosen = explicit or environ.get(ENV_OVERLAY)
    if chosen:
        return Path(chosen)
    if target is not None and not os.access(target, os.W_OK) and os.path.isdir(default):
        return Path(default)
    return None
