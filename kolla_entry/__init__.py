"""
kolla-entry: the container entrypoint for Kolla-style OpenStack images.

Library entry points (the CLI is a thin shell over these).
"""

from __future__ import annotations

from typing import Any

__all__ = ["apply_patches", "check_patches", "run"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so that `import kolla_entry` stays cheap on the start-up path (issue #7).
    if name in ("apply_patches", "check_patches"):
        from kolla_entry.patching import engine

        return getattr(engine, name)
    if name == "run":
        from kolla_entry.start import runner

        return runner.run
    raise AttributeError(name)
