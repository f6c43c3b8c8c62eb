"""Shared test helpers: filesystem trees as values (STYLE.md 9)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

TreeValue = Union[bytes, Tuple[bytes, int], "Symlink"]


class Symlink(str):
    """A tree entry that is a symbolic link to the given text."""


def make_tree(root: Path, files: Dict[str, TreeValue]) -> Path:
    """
    Create files below ``root``: ``{"a/b.py": b"..."}``, ``{"x": (b"...", 0o755)}``,
    ``{"link": Symlink("target")}``. Parent folders are created. Returns ``root``.
    """
    for rel, value in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(value, Symlink):
            os.symlink(str(value), path)
        elif isinstance(value, tuple):
            path.write_bytes(value[0])
            path.chmod(value[1])
        else:
            path.write_bytes(value)
    return root


def read_tree(root: Path) -> Dict[str, object]:
    """
    Return every entry below ``root`` (files: ``(bytes, mode)``, links: ``Symlink``,
    empty folders: ``"<dir>"``), so one equality also catches stray temp files.
    """
    tree: Dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in list(dirnames):
            path = base / name
            if path.is_symlink():
                tree[str(path.relative_to(root))] = Symlink(os.readlink(path))
                dirnames.remove(name)
            elif not any(path.iterdir()):
                tree[str(path.relative_to(root))] = "<dir>"
        for name in filenames:
            path = base / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                tree[rel] = Symlink(os.readlink(path))
            else:
                tree[rel] = (path.read_bytes(), stat.S_IMODE(path.lstat().st_mode))
    return tree


def configmap_dir(parent: Path, name: str, files: Dict[str, bytes]) -> Path:
    """
    Lay out ``files`` the way the kubelet mounts a ConfigMap at ``parent/name``: the data in a
    hidden timestamped folder, ``..data`` a symlink to it, and each key a symlink through
    ``..data``. Returns the mount folder.
    """
    mount = parent / name
    stamp = mount / "..2026_11_25_10_00_00.123456789"
    stamp.mkdir(parents=True)
    for key, data in files.items():
        (stamp / key).write_bytes(data)
    os.symlink(stamp.name, mount / "..data")
    for key in files:
        os.symlink(f"..data/{key}", mount / key)
    return mount


def scratch_repo(repo: Path) -> Callable[..., bytes]:
    """
    ``git init`` a scratch repository at ``repo`` (created) and return a ``git(*args)`` runner for it,
    isolated from the developer's git configuration.
    """
    import subprocess

    repo.mkdir(parents=True)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}

    def git(*cmd: str) -> bytes:
        return subprocess.run(["git", *cmd], cwd=repo, env=env, check=True, capture_output=True).stdout

    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    return git


def write_files(root: Path, files: Dict[str, Optional[bytes]]) -> None:
    """Write ``files`` below ``root``; a value of None deletes that file."""
    for rel, value in files.items():
        path = root / rel
        if value is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(value)


def git_diff(work: Path, before: Dict[str, bytes], after: Dict[str, Optional[bytes]], *,
             args: Tuple[str, ...] = ()) -> bytes:
    """
    A real ``git diff`` (a/ b/ prefixes, paths relative to the tree) turning ``before`` into ``after``.

    ``after`` values of ``None`` are deletions. ``work`` is a scratch folder for the repository.
    """
    repo = work / f"repo-{len(list(work.glob('repo-*')))}"
    git = scratch_repo(repo)
    make_tree(repo, dict(before))
    git("add", "-A")
    git("commit", "-q", "--allow-empty", "-m", "before")
    write_files(repo, after)
    git("add", "-A")
    return git("diff", "--cached", *args)


def without_bytecode(tree: Dict[str, object]) -> Dict[str, object]:
    """A :func:`read_tree` result without ``__pycache__`` entries (a timestamp pyc differs per run)."""
    return {rel: value for rel, value in tree.items() if "__pycache__" not in rel.split("/")}


def bytecode_of(root: Path, rel: str) -> Path:
    """Where the running interpreter looks for the plain bytecode of module ``rel`` below ``root``."""
    import importlib.util

    return Path(importlib.util.cache_from_source(str(root / rel)))


def bytecode_mode(root: Path, rel: str) -> Optional[str]:
    """
    The invalidation mode of the pyc of ``rel`` when the running interpreter would use it for the
    source as it is now (magic, flags, then mtime and size or the source hash), else None.

    Written from PEP 552 itself, not with kolla-entry's code: the test's own reading of a header.
    """
    import importlib.util
    import struct

    pyc = bytecode_of(root, rel)
    if not pyc.exists():
        return None
    head = pyc.read_bytes()[:16]
    source = root / rel
    if head[:4] != importlib.util.MAGIC_NUMBER:
        return None
    (flags,) = struct.unpack("<I", head[4:8])
    if flags == 0:
        mtime, size = struct.unpack("<II", head[8:16])
        st = source.stat()
        fits = mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF
        return "timestamp" if fits else None
    if flags in (1, 3):
        fits = head[8:16] == importlib.util.source_hash(source.read_bytes())
        return ("checked-hash" if flags == 3 else "unchecked-hash") if fits else None
    return None
