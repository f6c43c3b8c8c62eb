"""
A fake service for ``kolla-entry run`` tests.

``python fakeservice.py RECORD [--wait] [--read PATH]... [ARGS...]`` writes a JSON record to RECORD:
argv, pid, uid, gid, groups, env, cwd, what it could read, and the signals received. With
``--wait`` it stays up until SIGTERM/SIGINT/SIGHUP, records the signal and exits 0. The record is
replaced atomically, so a test polling it never reads half a file.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Dict, List


def _write(path: str, record: Dict[str, Any]) -> None:
    temp = f"{path}.tmp{os.getpid()}"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(temp, path)


def _readable(paths: List[str]) -> Dict[str, str]:
    result = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                result[path] = handle.read()
        except OSError as err:
            result[path] = f"ERROR {err.errno}"
    return result


def main(argv: List[str]) -> int:
    record_path = argv[1]
    wait = "--wait" in argv[2:]
    reads = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--read"]
    record: Dict[str, Any] = {
        "argv": argv,
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "euid": os.geteuid(),
        "groups": sorted(os.getgroups()),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "read": _readable(reads),
        "signals": [],
        "ready": True,
    }
    if not wait:
        _write(record_path, record)
        return 0

    def on_signal(number: int, _frame: Any) -> None:
        record["signals"].append(number)
        _write(record_path, record)
        sys.exit(0)

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, on_signal)
    _write(record_path, record)
    deadline = time.monotonic() + 30  # never outlive a broken test for long
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))
