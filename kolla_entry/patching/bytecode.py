"""
The bytes of a ``.pyc``: PEP 3147 names, PEP 552 headers, as pure functions (issue #13).

``compilecheck`` (marshalled code of each patched module) -> **bytecode** (header + code, a value)
-> ``pycache`` (which files, which invalidation mode, which interpreter) -> ``transaction`` (writes
them, journaled). Nothing here touches a filesystem: the overlay mode (issue #16) builds the same
bytes with :func:`pyc_bytes` and writes them its own way.

A header is 16 bytes: the interpreter's magic number, a little-endian 32-bit flags word, then
either the source's mtime and size (``timestamp``) or an 8-byte SipHash of the source (the
``checked-hash`` and ``unchecked-hash`` modes); the marshalled code object follows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Union

TIMESTAMP = "timestamp"
CHECKED_HASH = "checked-hash"
UNCHECKED_HASH = "unchecked-hash"

#: PEP 552 flags: bit 0 "hash-based", bit 1 "check the source" (only meaningful with bit 0).
_FLAGS: Dict[str, int] = {TIMESTAMP: 0b00, UNCHECKED_HASH: 0b01, CHECKED_HASH: 0b11}
_MODES = {flags: mode for mode, flags in _FLAGS.items()}

HEADER_SIZE = 16

#: A module's marshalled code, or what waits for it while workers still compile (``compilecheck``).
Code = Union[bytes, Callable[[], bytes]]


@dataclass(frozen=True)
class Header:
    """What a pyc's header says: the magic number of its interpreter and its invalidation mode."""

    magic: bytes
    mode: str


def pyc_bytes(code: bytes, *, magic: bytes, mode: str, mtime: int = 0, size: int = 0,
              source_hash: bytes = b"") -> bytes:
    """
    A whole ``.pyc`` file: header and marshalled code.

    Args:
        code: ``marshal.dumps`` of the module's code object, by the interpreter ``magic`` names.
        magic: the 4-byte magic number (``importlib.util.MAGIC_NUMBER`` of that interpreter).
        mode: ``timestamp``, ``checked-hash`` or ``unchecked-hash``.
        mtime: the source's ``st_mtime`` in whole seconds (``timestamp`` only).
        size: the source's size in bytes (``timestamp`` only).
        source_hash: the 8-byte source hash of :func:`source_hash` (hash modes only).

    Raises:
        ValueError: an unknown mode, a magic that is not 4 bytes, or a hash that is not 8.
    """
    if len(magic) != 4:
        raise ValueError(f"a magic number is 4 bytes, got {len(magic)}")
    flags = _FLAGS.get(mode)
    if flags is None:
        raise ValueError(f"unknown invalidation mode {mode!r}")
    if mode == TIMESTAMP:
        # The import system compares both modulo 2**32 (importlib._bootstrap_external).
        check = struct.pack("<II", mtime & 0xFFFFFFFF, size & 0xFFFFFFFF)
    elif len(source_hash) == 8:
        check = source_hash
    else:
        raise ValueError(f"a source hash is 8 bytes, got {len(source_hash)}")
    return magic + struct.pack("<I", flags) + check + code


def read_header(head: bytes) -> Optional[Header]:
    """The header of a pyc from its first 16 bytes, or None when they are not one."""
    if len(head) < HEADER_SIZE:
        return None
    (flags,) = struct.unpack("<I", head[4:8])
    mode = _MODES.get(flags)
    return None if mode is None else Header(head[:4], mode)


def source_hash(source: bytes) -> bytes:
    """
    The source hash the running interpreter checks a hash-based pyc against.

    Only valid for pycs of this interpreter: the key of the hash is its own magic number.
    """
    import importlib.util  # only when a hash-based pyc is written

    return importlib.util.source_hash(source)


def cache_name(stem: str, tag: str) -> str:
    """The non-optimised pyc name of module ``stem`` for cache tag ``tag`` (``mod.cpython-311.pyc``)."""
    return f"{stem}.{tag}.pyc"


@dataclass(frozen=True)
class Pyc:
    """
    A pyc to write beside a module written in the same commit: all of it but the source's stat.

    A timestamp pyc must carry the mtime the module gets when the transaction writes it, so
    the transaction renders it (:meth:`render`) right after staging the module.

    Args:
        source: the module's path in the same commit (relative to the target).
        code: the marshalled code object of the module's new content, or a callable that waits
            for it (the compile still running in workers when the commit starts).
        magic: the target interpreter's magic number.
        mode: the invalidation mode.
        source_hash: the new content's :func:`source_hash` (hash modes).
    """

    source: str
    code: Code
    magic: bytes
    mode: str
    source_hash: bytes = b""

    def marshalled(self) -> bytes:
        """The marshalled code, waited for if it is still being compiled."""
        return self.code if isinstance(self.code, bytes) else self.code()

    def render(self, mtime: float, size: int) -> bytes:
        """The pyc's bytes, given the written module's ``st_mtime`` and ``st_size``."""
        # int(), as the import system truncates st_mtime before comparing.
        return pyc_bytes(self.marshalled(), magic=self.magic, mode=self.mode, mtime=int(mtime), size=size,
                         source_hash=self.source_hash)
