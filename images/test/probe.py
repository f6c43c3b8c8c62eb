"""
Small host-side probes for images/test/container-test.sh (standard library only).

    probe.py free-port                      print a free TCP port on 127.0.0.1
    probe.py wait-http URL SECONDS          exit 0 once URL answers with any HTTP status
    probe.py header URL NAME                print the value of response header NAME (empty if absent)
    probe.py token URL USER PASSWORD_FILE   ask Keystone for a project-scoped token; print the HTTP status
                                            and, on 201, the length of X-Subject-Token
    probe.py statuses                       stdin: a check-patches --json report or a status --json state;
                                            print "<patch file name> <status>" lines
    probe.py last-event NAME                stdin: container logs; print the last JSON event named NAME
    probe.py json-lines                     stdin: container logs; print "<json lines> <other lines>"
                                            counted over the lines that start with "{"
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Optional, Tuple


def free_port() -> int:
    """Return a TCP port that nothing listens on at 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(url: str, data: Optional[bytes] = None) -> Tuple[int, Dict[str, str]]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    req = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers.items())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers.items())


def wait_http(url: str, seconds: float) -> int:
    """Poll ``url`` until it answers; 0 when it did within ``seconds``, else 1."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _request(url)
            return 0
        except (OSError, urllib.error.URLError):
            time.sleep(0.2)
    return 1


def token(url: str, user: str, password_file: str) -> str:
    """Issue a token with the password read from a file (so it is never on a command line)."""
    with open(password_file, encoding="utf-8") as handle:
        password = handle.read().rstrip("\n")
    body = {"auth": {
        "identity": {"methods": ["password"], "password": {
            "user": {"name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    status, headers = _request(url.rstrip("/") + "/auth/tokens", json.dumps(body).encode())
    subject = {k.lower(): v for k, v in headers.items()}.get("x-subject-token", "")
    return f"{status} {len(subject)}"


def statuses(document: Dict[str, Any]) -> List[str]:
    """Patch name and status from a check-patches report or from the state file's patches section."""
    section = document.get("patches", [])
    items = section.get("patches", []) if isinstance(section, dict) else section
    return [f"{str(item.get('patch', '')).rsplit('/', 1)[-1]} {item.get('status')}" for item in items]


def _json_lines(text: str) -> Tuple[List[Dict[str, Any]], int]:
    events: List[Dict[str, Any]] = []
    bad = 0
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            events.append(json.loads(line))
        except ValueError:
            bad += 1
    return events, bad


def main(argv: List[str]) -> int:
    """Dispatch one probe; see the module docstring."""
    command, args = argv[0], argv[1:]
    if command == "free-port":
        print(free_port())
    elif command == "wait-http":
        return wait_http(args[0], float(args[1]))
    elif command == "header":
        _, headers = _request(args[0])
        print({k.lower(): v for k, v in headers.items()}.get(args[1].lower(), ""))
    elif command == "token":
        print(token(args[0], args[1], args[2]))
    elif command == "statuses":
        print("\n".join(statuses(json.load(sys.stdin))))
    elif command == "last-event":
        events, _ = _json_lines(sys.stdin.read())
        matching = [e for e in events if e.get("event") == args[0]]
        print(json.dumps(matching[-1]) if matching else "")
    elif command == "json-lines":
        events, bad = _json_lines(sys.stdin.read())
        print(f"{len(events)} {bad}")
    else:
        print(f"unknown probe {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
