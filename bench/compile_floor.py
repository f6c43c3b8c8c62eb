"""
The compile floor of the patching rows (issue #13): compile every patched module, and nothing else.

``python compile_floor.py FILE...`` compiles each file with ``compile()`` and ``marshal.dumps`` in
forked workers, one per usable CPU, biggest first, as kolla-entry's compile check does, and sends
the marshalled code back to the parent. It neither reads patches nor writes a file: kolla-entry
cannot do less and still end with import-ready bytecode, so its time over this one is everything
else it does (its start, parsing and matching, the commit).
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
import sys
from typing import List, Tuple


def _compile(path: str) -> Tuple[str, bytes]:
    with open(path, "rb") as handle:
        return path, marshal.dumps(compile(handle.read(), path, "exec", dont_inherit=True, optimize=0))


def main(paths: List[str]) -> int:
    workers = min(len(paths), len(os.sched_getaffinity(0)))
    biggest_first = sorted(paths, key=lambda path: -os.path.getsize(path))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        code = dict(pool.imap_unordered(_compile, biggest_first, chunksize=1))
    return 0 if len(code) == len(paths) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
