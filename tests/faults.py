"""Fault injection through the filesystem seam (issue #8): fail, hook or kill at the Nth operation."""

from __future__ import annotations

import errno
import os
from typing import Callable, List, Tuple

from kolla_entry.fs.seam import FileSystem


class FaultFS(FileSystem):
    """Raise ``OSError(code)`` at the ``fail_at``-th seam operation (and after it, if sticky)."""

    def __init__(self, fail_at: int, code: int = errno.EIO, *, sticky: bool = False) -> None:
        self.fail_at = fail_at
        self.code = code
        self.sticky = sticky
        self.calls: List[Tuple[str, str]] = []

    def _count(self, operation: str, path: str) -> None:
        self.calls.append((operation, path))
        n = len(self.calls)
        if n == self.fail_at or (self.sticky and n > self.fail_at):
            raise OSError(self.code, os.strerror(self.code), path)


class HookFS(FileSystem):
    """Run ``hook(operation, path)`` before every seam operation."""

    def __init__(self, hook: Callable[[str, str], None]) -> None:
        self.hook = hook

    def _count(self, operation: str, path: str) -> None:
        self.hook(operation, path)


def crash_at(n: int, action: Callable[[FileSystem], None]) -> Tuple[int, int]:
    """Fork; the child runs ``action`` and dies (os._exit) at seam operation ``n``; return (status, ops)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns to pytest
        os.close(read_end)
        counter = [0]

        def die(operation: str, path: str) -> None:
            counter[0] += 1
            os.write(write_end, b".")
            if counter[0] == n:
                os._exit(9)

        try:
            action(HookFS(die))
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.close(write_end)
    seen = b""
    while chunk := os.read(read_end, 4096):
        seen += chunk
    os.close(read_end)
    _pid, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), len(seen)
