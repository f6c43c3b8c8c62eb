"""
Real users and groups for owner and privilege-drop tests (CI runs as root).

``created()`` adds two users and one extra group with unique names and removes them afterwards:
``service`` (primary group of its own name, also a member of ``extra``) and ``other``.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List

import pytest


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class Accounts:
    service: Account
    other: Account
    extra_group: str
    extra_gid: int


def _run(argv: List[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _account(name: str) -> Account:
    entry = pwd.getpwnam(name)
    return Account(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


@contextmanager
def created() -> Iterator[Accounts]:
    """Create the accounts (skip the test when not root), remove them on exit."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create users (CI runs as root)")
    tag = uuid.uuid4().hex[:6]
    service, other, extra = f"kesvc{tag}", f"keoth{tag}", f"kegrp{tag}"
    _run(["groupadd", extra])
    users = []
    try:
        _run(["useradd", "-M", "-U", "-d", f"/nonexistent/{service}", "-s", "/usr/sbin/nologin", "-G", extra,
              service])
        users.append(service)
        _run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin", other])
        users.append(other)
        yield Accounts(_account(service), _account(other), extra, grp.getgrnam(extra).gr_gid)
    finally:
        for name in users:
            subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", extra], check=False, capture_output=True)
