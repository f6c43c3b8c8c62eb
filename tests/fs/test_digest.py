"""The state file's digests are plain SHA-256."""

from __future__ import annotations

import hashlib

from kolla_entry.fs.digest import sha256_hex


def test_same_digest_as_hashlib() -> None:
    for data in (b"", b"abc", bytes(range(256)) * 1000):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
