"""
Overlay mode (issue #16): hot-fixes in pods with a read-only root, never written into the image.

``select -> apply: reuse check (manifest) or plan (kolla_entry.patching) -> rules -> layout -> build
(switch current) -> report / state``; :mod:`~kolla_entry.overlay.hook` is the service's side, a
standard-library-only import hook that the image build installs into the service venv.

Neighbours: ``kolla_entry.start.runner`` and the CLI choose the mode (:mod:`~kolla_entry.overlay.select`)
and call :func:`~kolla_entry.overlay.apply.apply_overlay`; planning is the patch engine's, unchanged;
every write goes through :mod:`kolla_entry.fs`. Nothing here is imported by a start without an overlay.
"""

from __future__ import annotations
