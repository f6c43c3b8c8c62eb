"""
Probes run inside the container by images/test/container-test.sh (`podman exec -i NAME python3 - ARGS`).

    procs                   one line per process: "pid ppid real-uid effective-uid cmdline"
    pyc SITE REL...         for each module REL (relative to SITE), print "REL ok|stale|absent|missing":
                            whether the bytecode Python would load for it matches the source on disk
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import List


def procs() -> List[str]:
    """List the container's processes from /proc (the image has no ps)."""
    lines = []
    for entry in sorted(os.listdir("/proc"), key=lambda e: (len(e), e)):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8") as handle:
                fields = dict(line.split(":", 1) for line in handle if ":" in line)
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        uids = fields["Uid"].split()
        lines.append(f"{entry} {fields['PPid'].strip()} {uids[0]} {uids[1]} {cmdline}")
    return lines


def pyc_state(site: str, rel: str) -> str:
    """
    Compare a module's cached bytecode with its source, the way the import system would.

    Returns:
        ``missing`` (no source), ``absent`` (no .pyc: Python compiles from source), ``ok`` (the .pyc
        belongs to this source), ``stale`` (a .pyc for another source, which an unchecked-hash .pyc
        would even run).
    """
    source = os.path.join(site, rel)
    if not os.path.exists(source):
        return "missing"
    cached = importlib.util.cache_from_source(source)
    if not os.path.exists(cached):
        return "absent"
    with open(cached, "rb") as handle:
        header = handle.read(16)
    with open(source, "rb") as handle:
        data = handle.read()
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:
        fresh = header[8:16] == importlib.util.source_hash(data)
    else:
        stat = os.stat(source)
        fresh = (int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
                 and int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF)
    return "ok" if fresh else "stale"


def main(argv: List[str]) -> int:
    """Dispatch one probe; see the module docstring."""
    if argv[0] == "procs":
        print("\n".join(procs()))
    elif argv[0] == "pyc":
        site = argv[1]
        for rel in argv[2:]:
            print(rel, pyc_state(site, rel))
    else:
        print(f"unknown probe {argv[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
