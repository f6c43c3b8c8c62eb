"""
The overlay's manifest: what a generation was made from, and the check that lets a restart reuse it.

``key (options + patch set) + image facts + tree facts -> manifest.json``. A generation is reused only
when the key is the same and every recorded fact still holds: each image file the patches name
(path, size, sha256, or absent), the listing of each mirrored folder and of site-packages itself (a
new package version renames its ``.dist-info``), and the overlay's own files, links and bytecode (a
service running as the same uid could have changed them). Anything else means a rebuild from scratch.

The bytecode of the changed modules is checked as the import system will check it, plus its code:
a ``timestamp`` pyc carries the mtime its overlay module got when the build wrote it, which only
that module's mtime can match. A generation's files are never rewritten, so a reuse keeps it valid;
a module whose mtime did change (touched, copied) makes the generation stale and a rebuild writes
fresh bytecode, so a reused generation never leaves the service compiling, nor running other code.
Neighbours: :mod:`kolla_entry.overlay.apply` decides, :mod:`kolla_entry.overlay.build` writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from kolla_entry.errors import KollaEntryError
from kolla_entry.overlay.layout import Layout
from kolla_entry.patching import bytecode as bc
from kolla_entry.patching import confine

#: 2: the overlay's bytecode (issue #13 in overlay mode); a version-1 generation is rebuilt.
MANIFEST_VERSION = 2
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Key:
    """What, besides the image, decides a generation's content."""

    version: str
    strip: int
    fuzz: int
    on_conflict: str
    patches: Tuple[Tuple[str, str], ...]

    def to_json(self) -> Dict[str, Any]:
        """The key as a JSON object."""
        return {"version": self.version, "strip": self.strip, "fuzz": self.fuzz, "on_conflict": self.on_conflict,
                "patches": [list(p) for p in self.patches]}


def digest(data: bytes) -> str:
    """sha256 hex (``hashlib``: OpenSSL's is several times faster on the megabytes of a large series)."""
    return hashlib.sha256(data).hexdigest()


def listing_digest(names: Iterable[str]) -> str:
    """
    A folder listing as one digest, without ``__pycache__``: an interpreter may write bytecode into a
    writable image, and a link to bytecode that changed is only a recompilation, never other code.
    """
    return digest("\0".join(sorted(n for n in names if n != "__pycache__")).encode("utf-8", "surrogateescape"))


def image_facts(target: Path, paths: Iterable[str], layout: Layout) -> Dict[str, Any]:
    """
    The facts about the image a generation depends on.

    Args:
        target: the image site-packages.
        paths: every path the series' reports name (read, written, skipped or looked for).
        layout: the generation's layout (its mirrored folders' listings).
    """
    return {"top": listing_digest(_listdir(str(target)) or ()),
            "files": {rel: _file_fact(target, rel) for rel in sorted(set(paths))},
            "dirs": {folder: listing_digest(names) for folder, names in sorted(layout.listings.items())
                     if os.path.basename(folder) != "__pycache__"}}


def _file_fact(target: Path, rel: str) -> Optional[List[Any]]:
    try:
        found = confine.read_target(target, rel)
    except KollaEntryError:
        return ["unreadable"]
    return None if found is None else [len(found.content), digest(found.content)]


def _listdir(folder: str) -> Optional[List[str]]:
    try:
        return os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None


def tree_facts(layout: Layout) -> Dict[str, Any]:
    """
    What the generation's tree must hold: each file's size and digest, each link, each folder's names,
    and each pyc's header fields and code (its timestamp is the module's mtime once written: see
    :func:`_pyc_differs`).
    """
    names: Dict[str, List[str]] = {folder: [] for folder in ("", *layout.dirs)}
    for change in (*layout.files, *layout.bytecode):
        names.setdefault(os.path.dirname(change.path), []).append(os.path.basename(change.path))
    for path, _ in layout.links:
        names.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    for folder in layout.dirs:
        if folder:
            names.setdefault(os.path.dirname(folder), []).append(os.path.basename(folder))
    assert all(c.content is not None for c in layout.files)
    return {"files": {c.path: [len(c.content or b""), digest(c.content or b"")] for c in layout.files},
            "links": dict(layout.links),
            "dirs": {folder: sorted(entries) for folder, entries in sorted(names.items())},
            "bytecode": {c.path: _pyc_fact(c.bytecode) for c in layout.bytecode if c.bytecode is not None}}


def _pyc_fact(pyc: bc.Pyc) -> Dict[str, Any]:
    code = pyc.marshalled()
    return {"source": pyc.source, "magic": pyc.magic.hex(), "mode": pyc.mode, "hash": pyc.source_hash.hex(),
            "code": [len(code), digest(code)]}


def document(key: Key, target: str, image: Dict[str, Any], tree: Dict[str, Any],
             reports: List[Dict[str, Any]]) -> bytes:
    """The manifest's bytes (paths, sizes, digests and statuses: never file contents)."""
    return json.dumps({"version": MANIFEST_VERSION, "target": target, "key": key.to_json(), "image": image,
                       "tree": tree, "reports": reports}, indent=1, sort_keys=True).encode()


def load(generation: Path) -> Optional[Dict[str, Any]]:
    """A generation's manifest, or None when missing or unreadable (the generation is then rebuilt)."""
    try:
        data = json.loads((generation / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return None
    return data


def stale_reason(manifest: Dict[str, Any], key: Key, target: Path, tree_root: Path) -> Optional[str]:
    """
    Why the generation cannot be reused, or None when it can.

    Args:
        manifest: the generation's manifest.
        key: this start's options and patch set.
        target: the image site-packages.
        tree_root: the generation's tree.
    """
    if manifest.get("key") != key.to_json():
        return "the patches or options changed"
    if manifest.get("target") != os.path.realpath(target):
        return "it was made for another site-packages"
    image = manifest["image"]
    if listing_digest(_listdir(str(target)) or ()) != image["top"]:
        return "the image's site-packages lists other packages"
    for folder, recorded in image["dirs"].items():
        if listing_digest(_listdir(os.path.join(target, folder)) or ()) != recorded:
            return f"the image folder {folder} changed"
    for rel, fact in image["files"].items():
        if _file_fact(target, rel) != fact:
            return f"the image file {rel} changed"
    return _tree_differs(manifest["tree"], tree_root)


def _tree_differs(tree: Dict[str, Any], root: Path) -> Optional[str]:
    for folder, names in tree["dirs"].items():
        found = _listdir(os.path.join(root, folder))
        if found is None or sorted(n for n in found if not python_bytecode(folder, n, tree)) != names:
            return f"the overlay folder {folder or '.'} was changed"
    for path, points_to in tree["links"].items():
        try:
            if os.readlink(os.path.join(root, path)) != points_to:
                return f"the overlay link {path} was changed"
        except OSError:
            return f"the overlay link {path} is missing"
    for path, fact in tree["files"].items():
        data = _read_regular(os.path.join(root, path))
        if data is None or [len(data), digest(data)] != fact:
            return f"the overlay file {path} was changed"
    for path, pyc in tree["bytecode"].items():
        if _pyc_differs(root, path, pyc):
            return f"the overlay's bytecode {path} does not fit its module (changed, or the module's mtime)"
    return None


def _pyc_differs(root: Path, path: str, fact: Dict[str, Any]) -> bool:
    """
    Whether the pyc at ``path`` is not what the build wrote for its module as the module is now.

    Its module was checked just before (digest): the header must still be the one Python accepts for
    it (the module's current mtime and size for ``timestamp``) and the code the compile check's.
    """
    data = _read_regular(os.path.join(root, path))
    if data is None:
        return True
    try:
        st = os.lstat(os.path.join(root, fact["source"]))
    except OSError:
        return True
    try:
        header = bc.pyc_bytes(b"", magic=bytes.fromhex(fact["magic"]), mode=fact["mode"], mtime=int(st.st_mtime),
                              size=st.st_size, source_hash=bytes.fromhex(fact["hash"]))
    except (KeyError, TypeError, ValueError):
        return True  # a manifest not of our making: rebuild
    body = data[bc.HEADER_SIZE:]
    return data[:bc.HEADER_SIZE] != header or [len(body), digest(body)] != fact["code"]


def _read_regular(path: str) -> Optional[bytes]:
    """A regular file's bytes; None for anything else (a link, a fifo that would hang the start, missing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read()
    finally:
        os.close(fd)


def python_bytecode(folder: str, name: str, tree: Dict[str, Any]) -> bool:
    """
    Whether ``folder/name`` in a generation is bytecode the service's interpreter wrote.

    Python writes bytecode beside the modules it imports when it finds none it may use (a ``__pycache__``
    entry that is neither one of the generation's links nor one of the pycs the build wrote, or a whole
    ``__pycache__`` folder the layout has none of). It cannot be checked cheaply, so
    ``build.drop_bytecode`` removes it before a reuse and it never counts as a change here.
    """
    path = f"{folder}/{name}" if folder else name
    if name == "__pycache__":
        return path not in tree["dirs"]
    return os.path.basename(folder) == "__pycache__" and path not in tree["links"] and path not in tree["bytecode"]
