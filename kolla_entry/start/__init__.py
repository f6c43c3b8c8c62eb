"""
The pod start (``kolla-entry run``): ``reader -> depend -> patches (kolla_entry.patching) -> install
(render, copier) -> execute (privileges, exec)``, in the order :mod:`kolla_entry.start.runner` fixes.

The service config is read into frozen values first (:mod:`~kolla_entry.start.reader`, :mod:`~kolla_entry.start.model`),
so an invalid config changes nothing. Loaded lazily: importing the package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["RunRequest", "run"]

if TYPE_CHECKING:
    from kolla_entry.start.runner import RunRequest, run


def __getattr__(name: str) -> Any:
    if name in __all__:
        from kolla_entry.start import runner

        return getattr(runner, name)
    raise AttributeError(name)
