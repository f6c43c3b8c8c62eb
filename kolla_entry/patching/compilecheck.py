"""
The ``compile()`` check of patched modules (issue #2), in parallel when it pays.

Compiling is most of a large first apply (about 0.9 s for the 10 MB of the nova 31.0.0 -> 31.3.1
fixes, issue #7); the modules are independent, so forked workers share it. The planner first
works the series out collecting every module it would check, then checks them all here; only
when one fails does it plan again checking inline, which names the failing patch exactly.

The code objects are not thrown away (issue #13): for the modules the commit will write, each
worker sends back ``marshal.dumps`` of its code, and :mod:`kolla_entry.patching.pycache` turns it
into the ``.pyc`` Python will load. A code object lives only in the process that compiled it, one
at a time; the parent holds marshalled bytes, never all code objects at once.

An apply need not wait for the workers before it commits (:func:`start`): the commit stages the
module texts, and the pycs of the modules already compiled, while the rest compile; it takes
each module's code when it renders that pyc and the verdict before anything becomes visible
(the swap), so a module that does not compile still means nothing was written.
"""

from __future__ import annotations

import marshal
import os
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Iterator, List, Mapping, Optional, Sequence, Tuple

from kolla_entry.errors import PatchConflict

if TYPE_CHECKING:
    from kolla_entry.patching.transaction import FileChange

#: Below this much Python source a worker pool costs more than it saves.
PARALLEL_BYTES = 1024 * 1024

Module = Tuple[str, bytes]
#: Index of a module in the checked sequence -> ``marshal.dumps`` of its code object.
Marshalled = Dict[int, bytes]
#: What a worker sends back: the module's index, whether it compiles, its marshalled code if kept.
_Result = Tuple[int, bool, Optional[bytes]]

_SHARED: Sequence[Module] = ()
_KEEP: FrozenSet[int] = frozenset()


def compile_error(rel: str, content: bytes) -> Optional[PatchConflict]:
    """The conflict a patched module that does not compile is, or None when it compiles."""
    return _compile(rel, content, keep=False)[1]


def _compile(rel: str, content: bytes, *, keep: bool) -> Tuple[Optional[bytes], Optional[PatchConflict]]:
    try:
        # optimize=0: the code of the plain `.pyc`, whatever -O kolla-entry itself runs with.
        code = compile(content, rel, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None)
        where = f" at line {line}" if line else ""
        msg = getattr(err, "msg", str(err))
        return None, PatchConflict(f"the patched file would not compile{where}: {msg}; nothing was written",
                                   file=rel)
    except (RecursionError, MemoryError) as err:
        # CPython's compiler gives up on deeply nested code this way (the parser's stack overflow is a
        # MemoryError); the service's own import would fail the same.
        return None, PatchConflict(f"the patched file would not compile: too deeply nested for the compiler "
                                   f"({type(err).__name__}); nothing was written", file=rel)
    return (marshal.dumps(code) if keep else None), None


def python_modules(writes: Mapping[str, object]) -> List[str]:
    """The written paths that are Python modules (``.py``), deletions left out."""
    return [rel for rel, state in writes.items() if state is not None and rel.endswith(".py")]


class NotCompiled(Exception):
    """A module of a :class:`Compilation` does not compile (raised where its code or verdict is awaited)."""


class Compilation:
    """
    The compile of a set of modules, finished or still running in forked workers (see :func:`start`).

    Use as a context manager: leaving it stops the workers, whatever their state.

    Args:
        found: the marshalled code taken so far; None for a finished compile that failed.
        results: what the workers send, still to take (None once all is taken, or with no workers).
        pool: the workers' pool, terminated on :meth:`close`.
    """

    def __init__(self, found: Optional[Marshalled], results: Optional[Iterator[_Result]] = None,
                 pool: Any = None) -> None:
        self._found: Marshalled = found or {}
        self._failed = found is None and results is None
        self._results = results
        self._pool = pool

    @property
    def running(self) -> bool:
        """Whether workers may still be compiling (results not all taken yet)."""
        return self._results is not None and not self._failed

    def code(self, index: int) -> bytes:
        """
        The marshalled code of kept module ``index``, once its worker sent it.

        Raises:
            NotCompiled: some module of the set does not compile.
        """
        while index not in self._found and self._next():
            pass
        if self._failed:
            raise NotCompiled()
        return self._found[index]

    def wait(self) -> Optional[Marshalled]:
        """Every kept module's marshalled code once all are compiled; None when any does not compile."""
        while self._next():
            pass
        return None if self._failed else self._found

    def confirm(self) -> None:
        """
        Return once every module compiled.

        Raises:
            NotCompiled: some module does not compile.
        """
        if self.wait() is None:
            raise NotCompiled()

    def _next(self) -> bool:
        """Take one more result from the workers; False once none is left to take."""
        if self._failed or self._results is None:
            return False
        try:
            index, ok, code = next(self._results)
        except StopIteration:
            self._results = None
            self.close()
            return False
        if not ok:
            self._failed = True
            self.close()
        elif code is not None:
            self._found[index] = code
        return not self._failed

    def close(self) -> None:
        """Stop the workers (a no-op once they are done)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.terminate()
            _release()

    def __enter__(self) -> Compilation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def all_compile(modules: Sequence[Module]) -> bool:
    """
    Whether every module compiles: in forked workers for a large set on several CPUs, else here.
    """
    return compile_all(modules) is not None


def compile_all(modules: Sequence[Module], keep: Sequence[int] = ()) -> Optional[Marshalled]:
    """
    Compile every module, in forked workers for a large set on several CPUs, else here.

    Args:
        modules: (path, content) of each module to check.
        keep: the indexes whose marshalled code to return (the contents the commit writes).

    Returns:
        None when any module does not compile; else the marshalled code of each index of ``keep``.
    """
    with start(modules, keep) as compilation:
        return compilation.wait()


def start(modules: Sequence[Module], keep: Sequence[int] = ()) -> Compilation:
    """
    Start compiling every module: in forked workers for a large set on several CPUs (returning
    at once), else here (returning when done).

    Args:
        modules: (path, content) of each module to check; the workers inherit them at the fork.
        keep: the indexes whose marshalled code to keep (the contents the commit writes).
    """
    wanted = frozenset(keep)
    workers = min(len(modules), _usable_cpus())
    if workers >= 2 and sum(len(content) for _, content in modules) >= PARALLEL_BYTES:
        try:
            return _in_workers(modules, wanted, workers)
        except OSError:
            # A pool needs semaphores (/dev/shm) and pipes; a locked-down container may have neither.
            pass
    found: Marshalled = {}
    for index, (rel, content) in enumerate(modules):
        code, error = _compile(rel, content, keep=index in wanted)
        if error is not None:
            return Compilation(None)
        if code is not None:
            found[index] = code
    return Compilation(found)


def _in_workers(modules: Sequence[Module], keep: FrozenSet[int], workers: int) -> Compilation:
    """
    :func:`start` in forked workers.

    Raises:
        OSError: no pool can be made here (then the caller compiles in-process).
    """
    import multiprocessing  # only on this path: it costs a pod start with no patch nothing

    global _SHARED, _KEEP
    _SHARED, _KEEP = modules, keep  # the forked workers inherit them: no source is pickled
    try:
        pool = multiprocessing.get_context("fork").Pool(workers)
    except BaseException:
        _release()
        raise
    biggest_first = sorted(range(len(modules)), key=lambda i: -len(modules[i][1]))
    return Compilation({}, pool.imap_unordered(_compiles, biggest_first, chunksize=1), pool)


def _release() -> None:
    global _SHARED, _KEEP
    _SHARED, _KEEP = (), frozenset()


def _compiles(index: int) -> _Result:
    rel, content = _SHARED[index]
    code, error = _compile(rel, content, keep=index in _KEEP)
    return index, error is None, code


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def final_modules(modules: Sequence[Module], changes: Sequence[FileChange]) -> List[int]:
    """
    The indexes of ``modules`` whose content is what ``changes`` write (the last one of each path).

    A series may check one module several times (each patch's result); only the content that
    is committed gets bytecode.
    """
    final = {c.path: c.content for c in changes if c.content is not None}
    keep: List[int] = []
    for index in range(len(modules) - 1, -1, -1):
        rel, content = modules[index]
        if rel in final and final[rel] == content:
            keep.append(index)
            del final[rel]
    return keep
