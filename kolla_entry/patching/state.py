"""
The state file: what kolla-entry did on this container's last start.

One JSON document with a section per concern (``patches``, ``configs``, ``command``); an operator
reads it with ``kubectl exec ... kolla-entry status``. It never holds file contents or secrets.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any, Dict

from kolla_entry.errors import EnvironmentProblem
from kolla_entry.fs.atomic import atomic_write_file

if TYPE_CHECKING:
    from _typeshed import StrPath

STATE_VERSION = 1


def load(path: StrPath) -> Dict[str, Any]:
    """
    Read the state file; an absent file is an empty state.

    Raises:
        EnvironmentProblem: the file exists but cannot be read or is not a JSON object.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise EnvironmentProblem(f"cannot read the state file: {err.strerror}", file=str(path)) from err
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise EnvironmentProblem(f"the state file is not valid JSON ({err}); remove it to start afresh",
                                 file=str(path)) from err
    if not isinstance(data, dict):
        raise EnvironmentProblem("the state file does not hold a JSON object", file=str(path))
    return data


def record(path: StrPath, section: str, data: Any) -> None:
    """
    Replace one section of the state file, atomically, keeping the others.

    Args:
        path: the state file (its folder is created when missing).
        section: ``patches``, ``configs`` or ``command``.
        data: JSON-serialisable facts; never contents or secret values.
    """
    try:
        current = load(path)
    except EnvironmentProblem:
        current = {}
    current["version"] = STATE_VERSION
    current["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    current[section] = data
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    content = (json.dumps(current, indent=2, sort_keys=False) + "\n").encode()
    # No fsync: the state describes this container's start and is written again at the next one.
    atomic_write_file(path, content, mode=0o644, uid=os.getuid(), gid=os.getgid(), durable=False)
