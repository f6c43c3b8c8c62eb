"""
The target as a patch series sees it: the files on disk plus the earlier patches' results.

Only the files that patches name are ever read (through ``confine``), so the cost follows the
patches, not the size of site-packages.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from kolla_entry.patching import confine
from kolla_entry.patching.transaction import FileChange


@dataclass(frozen=True)
class FileState:
    """A regular file's content and permission bits."""

    content: bytes
    mode: int


class SeriesView:
    """
    The target as the earlier patches of the series leave it, kept in memory.

    Only the files patches name are ever read: the cost follows the patches, not site-packages.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._original: Dict[str, Optional[FileState]] = {}
        self._current: Dict[str, Optional[FileState]] = {}

    def get(self, rel: str) -> Optional[FileState]:
        """The file's state now (after the earlier patches), None if absent."""
        if rel in self._current:
            return self._current[rel]
        if rel not in self._original:
            found = confine.read_target(self.root, rel)
            self._original[rel] = None if found is None else FileState(found.content, stat.S_IMODE(found.mode))
        return self._original[rel]

    def top_level_exists(self, rel: str) -> bool:
        """Whether the first folder (or file) of ``rel`` is installed in the target."""
        top = rel.split("/", 1)[0]
        if any(path.split("/", 1)[0] == top and state is not None for path, state in self._current.items()):
            return True
        return confine.top_level_exists(self.root, rel)

    def update(self, writes: Dict[str, Optional[FileState]]) -> None:
        """Make a patch's writes visible to the patches after it."""
        for rel in writes:
            self.get(rel)
        self._current.update(writes)

    def net_changes(self) -> Tuple[FileChange, ...]:
        """What differs from the target on disk, as changes for the transaction."""
        changes = []
        for rel, state in self._current.items():
            if state == self._original.get(rel):
                continue
            if state is None:
                changes.append(FileChange(path=rel, content=None, mode=None))
            else:
                changes.append(FileChange(path=rel, content=state.content, mode=state.mode))
        return tuple(sorted(changes, key=lambda change: change.path))


class PatchWork:
    """Reads and writes of one patch, layered over the series view until the patch succeeds."""

    def __init__(self, view: SeriesView) -> None:
        self.view = view
        self.writes: Dict[str, Optional[FileState]] = {}

    def get(self, rel: str) -> Optional[FileState]:
        if rel in self.writes:
            return self.writes[rel]
        return self.view.get(rel)

    def put(self, rel: str, state: Optional[FileState]) -> None:
        self.writes[rel] = state
