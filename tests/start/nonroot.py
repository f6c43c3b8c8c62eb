"""
Runs ``kolla-entry run`` (the library's ``runner.run``) as a non-root uid, for the tests of a start that is
not root (in place: tests/start/test_runner.py; overlay mode, a runAsUser pod: tests/start/test_runner_overlay.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any, Dict

# The venv's interpreter lives under /root (0700 here), so the child imports everything first, then drops
# to the uid and calls run(); on success it is the service (exec), else it prints the error as JSON.
_AS_USER = """
import importlib, json, os, pkgutil, sys
from pathlib import Path
import kolla_entry
for module in pkgutil.walk_packages(kolla_entry.__path__, "kolla_entry."):
    if module.name != "kolla_entry.__main__":
        importlib.import_module(module.name)
import encodings.ascii, hashlib, structlog, structlog.testing, unidiff
import kolla_entry.start.runner as runner
from kolla_entry import log
from kolla_entry.errors import KollaEntryError
log.configure("json", stream=sys.stderr)
args = json.loads(sys.argv[1])
environ = {"PATH": "/usr/bin:/bin"}
if args.get("overlay"):
    environ["KOLLA_ENTRY_OVERLAY"] = args["overlay"]
os.setgroups([]); os.setgid(int(sys.argv[3])); os.setuid(int(sys.argv[2]))
try:
    runner.run(runner.RunRequest(command=tuple(args["command"]), config=Path(args["config"]),
               user=args.get("user"), patterns=tuple(args["patterns"]), target=args.get("target"),
               state_file=Path(args["state_file"]), environ=environ))
except KollaEntryError as err:
    print(json.dumps({"error": type(err).__name__, "message": str(err)}))
"""


def run_as(uid: int, gid: int, args: Dict[str, Any]) -> Dict[str, Any]:
    """
    Start kolla-entry as ``uid``/``gid`` with ``args`` (command, config, patterns, state_file; optional
    user, target, overlay).

    Returns:
        ``{"error", "message"}`` when run() raised, else ``{"returncode", "stdout", "stderr"}`` of the
        process (the exec'd service's once kolla-entry got that far).
    """
    done = subprocess.run([sys.executable, "-c", _AS_USER, json.dumps(args), str(uid), str(gid)],
                          capture_output=True, text=True, timeout=60, check=False)
    lines = done.stdout.strip().splitlines()
    if lines and lines[-1].startswith('{"error"'):
        result: Dict[str, Any] = json.loads(lines[-1])
        return result
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
